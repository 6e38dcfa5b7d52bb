"""`pipeline package --rehearse`: run a package's notebook here as Kaggle would. The notebook's code cells run as
one script with the network off, the competition, weights and wheels datasets read-only under /kaggle/input,
/kaggle/working writable, and a hidden test set that is not the public one: a seeded share of the public test
images plus images of noise, with its own sample submission.

Isolation: where this process may (root, or a user namespace where /kaggle exists), a new network namespace (its
only interface a loopback that is down: every connection fails) and a mount namespace in which a tmpfs on /kaggle
holds read-only bind mounts of the three datasets (and dataset/ itself, which the competition's training entries
link to). Elsewhere the paths come through the environment, every Python process of the run (pip's too) refuses
sockets through an audit hook, and the inputs are copies without write permission. The run says which it had.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from pipeline.competition import read_competition
from pipeline.errors import PipelineError
from pipeline.layout import read_sample
from pipeline.run import checkpoint_key
from pipeline.workspace import read_json, write_text_atomic
from pipeline.package import MARGIN, duration, notebook_script, package_classes

NOISE_SHARE = 0.05  # of the hidden test set: images of noise (at least one)
TIMING = "pipeline-timing.json"  # the notebook's measurements, in /kaggle/working
BLOCK_SOCKETS = '''import sys


def _no_network(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.sendto", "socket.sendmsg"):
        raise OSError(101, "Network is unreachable (blocked by pipeline's rehearsal, as Kaggle's internet-off run)")


sys.addaudithook(_no_network)
'''


@dataclass(frozen=True)
class HiddenSet:
    folder: Path  # the competition as the notebook sees it
    public: int  # test images of the public set
    images: int  # of the hidden one
    noise: int  # of them, images of noise


@dataclass(frozen=True)
class Rehearsal:
    submission: Path
    hidden: HiddenSet
    isolation: str
    setup_s: float  # installing the wheels
    predict_s: float  # laying out and predicting the hidden set
    estimate_s: float  # setup and prediction of `estimate_for` test images on this machine
    estimate_for: int
    log: Path


def parse_budget(text: str) -> float:
    """Seconds of `9h`, `90m`, `2h30m` or `600s`."""
    match = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*", text)
    if not text.strip() or not match or not any(match.groups()):
        raise PipelineError(f"--budget {text!r}: give a time such as 9h, 90m, 2h30m or 600s")
    hours, minutes, seconds = (float(part or 0) for part in match.groups())
    if hours * 3600 + minutes * 60 + seconds <= 0:
        raise PipelineError(f"--budget {text!r}: must be more than no time")
    return hours * 3600 + minutes * 60 + seconds


def rehearse(package: Path, dataset_root: Path, out: Path, hidden_fraction: float = 0.5, seed: int = 0,
             budget_s: float | None = None, estimate_for: int | None = None) -> Rehearsal:
    """Run `package`'s notebook against a hidden test set made from `dataset_root`'s; its submission, checked as
    Kaggle checks one, is copied to `out` (its log and the rehearsal's numbers, .log and .json, beside it). A
    notebook that fails, a submission Kaggle would refuse, or a run that would not fit in `budget_s` for
    `estimate_for` test images is one line saying so."""
    competition, weights_slug, wheels_slug = read_package(package)
    if not out.parent.is_dir():
        raise PipelineError(f"{out.parent}: no such folder for the rehearsal's submission; create it or name another")
    log = out.with_suffix(".log")
    with tempfile.TemporaryDirectory(prefix="pipeline-rehearsal-") as scratch:
        root = Path(scratch)
        hidden = hidden_competition(dataset_root, root / "input" / competition, hidden_fraction, seed)
        for folder in ("working", "tmp"):
            (root / folder).mkdir()
        script = root / "notebook.py"
        script.write_text(notebook_script(package / "notebook" / "predict.ipynb"))
        inputs = {competition: hidden.folder, weights_slug: package / "weights", wheels_slug: package / "wheels"}
        done, isolation = run_isolated(script, inputs, root, dataset_root, budget_s)
        log.write_text(done.stdout + done.stderr)
        if done.returncode:
            lines = [line for line in (done.stderr.strip() or done.stdout.strip()).splitlines() if line.strip()]
            raise PipelineError(f"the notebook failed as it would on Kaggle ({isolation}): "
                                f"{lines[-1] if lines else f'exit status {done.returncode}'}; its log: {log}")
        submission = root / "working" / "submission.csv"
        if not submission.is_file():
            raise PipelineError(f"the notebook wrote no /kaggle/working/submission.csv; its log: {log}")
        _check_submission(submission, package / "weights", hidden, root / "check")
        timing = json.loads((root / "working" / TIMING).read_text())
        shutil.copyfile(submission, out)
    size = estimate_for or hidden.public
    estimate = timing["setup_s"] + timing["predict_s"] * size / hidden.images
    if budget_s is not None and estimate > budget_s * MARGIN:
        raise PipelineError(f"{package}: the notebook would take about {duration(estimate)} for {size} test images "
                            f"on this machine, over {MARGIN:.0%} of the {duration(budget_s)} budget; package fewer "
                            "runs or a lighter --tta, or predict on a GPU")
    done = Rehearsal(out, hidden, isolation, timing["setup_s"], timing["predict_s"], estimate, size, log)
    write_text_atomic(out.with_suffix(".json"), json.dumps(
        {"public_images": hidden.public, "hidden_images": hidden.images, "noise_images": hidden.noise,
         "isolation": isolation, "setup_s": round(done.setup_s, 2), "predict_s": round(done.predict_s, 2),
         "device": timing["device"], "estimate_s": round(estimate, 1), "estimate_for": size}, indent=2) + "\n")
    return done


def read_package(package: Path) -> tuple[str, str, str]:
    """The competition and the weights and wheels datasets' slugs of a package folder, checked as the notebook will
    read them; a folder `pipeline package` did not write, or one edited since, is one line."""
    from pipeline.package import package_members

    def refuse(path: Path, what: str) -> PipelineError:
        return PipelineError(f"{path}: {what}; not as `pipeline package` writes it: build the package again")

    kernel_file, members_file = package / "notebook" / "kernel-metadata.json", package / "weights" / "members.json"
    try:
        kernel = read_json(kernel_file)
        notebook_script(package / "notebook" / "predict.ipynb")
        if not members_file.is_file():
            raise FileNotFoundError(2, "missing", str(members_file))
    except FileNotFoundError as e:
        raise refuse(Path(e.filename), "missing") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise refuse(package, f"unreadable ({e})") from None
    sources = kernel.get("dataset_sources") if isinstance(kernel, dict) else None
    competitions = kernel.get("competition_sources") if isinstance(kernel, dict) else None
    if not (isinstance(sources, list) and len(sources) == 2 and all(isinstance(s, str) and "/" in s for s in sources)
            and isinstance(competitions, list) and len(competitions) == 1 and isinstance(competitions[0], str)):
        raise refuse(kernel_file, "its competition_sources and dataset_sources are not one competition and the two "
                                  "datasets")
    members = package_members(package / "weights")  # its runs (lists of its model files) and tta, as the notebook reads
    checkpoints = members.get("checkpoints")
    if not (isinstance(checkpoints, list) and checkpoints and len(set(map(str, checkpoints))) == len(checkpoints)
            and all(isinstance(name, str) and (package / "weights" / name).is_file() for name in checkpoints)):
        raise refuse(members_file, "its checkpoints are not a list of the dataset's model files, each once")
    if [path.name for run in members["runs"] for path in run] != checkpoints:
        raise refuse(members_file, "its runs do not group its checkpoints, in their order")
    keys = members.get("keys", {})
    changed = [name for name in checkpoints if not isinstance(keys, dict) or
               keys.get(name) != checkpoint_key(package / "weights" / name)]
    if changed:
        raise refuse(package / "weights" / changed[0], "not the model file the package was built with")
    read_competition(package / "weights")
    return competitions[0], *(source.split("/", 1)[1] for source in sources)


def hidden_competition(dataset_root: Path, folder: Path, fraction: float, seed: int) -> HiddenSet:
    """`dataset_root`'s competition in `folder` with another test set: a seeded `fraction` of its test images and
    NOISE_SHARE as many images of noise, and a sample submission of their ids; the other entries link back."""
    c = read_competition(dataset_root)
    sample = read_sample(dataset_root, c)
    test_top = PurePosixPath(c.test_images).parts[0]
    if test_top in {PurePosixPath(path).parts[0] for path in (c.train_images, c.labels_csv) if path}:
        raise PipelineError(f"{dataset_root / 'competition.json'}: the test images share {test_top} with the training "
                            "set; the rehearsal swaps in another test set and needs them in a folder of their own")
    rng = np.random.default_rng(seed)
    kept = sample.iloc[np.sort(rng.choice(len(sample), max(1, round(len(sample) * fraction)), replace=False))]
    folder.mkdir(parents=True)
    for entry in dataset_root.iterdir():
        if entry.name not in (test_top, c.sample_submission, "competition.json") and not entry.name.startswith("."):
            (folder / entry.name).symlink_to(entry.resolve())
    ids = kept[c.submission_id].tolist()
    source, target = dataset_root / c.test_images, folder / c.test_images
    target.mkdir(parents=True)
    for image_id in ids:
        shutil.copyfile(source / c.image_file(image_id), target / c.image_file(image_id))
    noise_ids = _noise_images(target, source / c.image_file(ids[0]), c.image_suffix,
                              max(1, round(len(ids) * NOISE_SHARE)), rng)
    filler = kept.iloc[[0] * len(noise_ids)].assign(**{c.submission_id: noise_ids})
    (folder / c.sample_submission).parent.mkdir(parents=True, exist_ok=True)
    pd.concat([kept, filler]).to_csv(folder / c.sample_submission, index=False)
    return HiddenSet(folder, len(sample), len(ids) + len(noise_ids), len(noise_ids))


def _noise_images(folder: Path, like: Path, suffix: str, count: int, rng: np.random.Generator) -> list[str]:
    """`count` images of uniform noise of `like`'s size, mode and format; their ids."""
    from PIL import Image

    with Image.open(like) as image:
        size, mode, extension = image.size, image.mode, like.suffix
    ids = []
    for k in range(count):
        name = f"pipeline-noise-{k}{extension}"
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(folder / name)
        ids.append(name[:-len(suffix)] if suffix else name)
    return ids


def _check_submission(submission: Path, weights: Path, hidden: HiddenSet, check: Path) -> None:
    """The submission as Kaggle's scorer takes it: the hidden sample's header and ids in order, known labels."""
    from pipeline.submission import validate_submission

    check.mkdir()
    for entry in hidden.folder.iterdir():
        (check / entry.name).symlink_to(entry)
    shutil.copyfile(weights / "competition.json", check / "competition.json")
    validate_submission(submission, check, package_classes(weights), shown_as=Path("/kaggle/working/submission.csv"))


def namespaces_work() -> bool:
    """Whether this process can open network and mount namespaces and mount a tmpfs on /kaggle in them."""
    if not shutil.which("unshare") or not (Path("/kaggle").is_dir() or os.geteuid() == 0):
        return False
    probe = subprocess.run(["unshare", "--net", "--mount", *([] if os.geteuid() == 0 else ["--map-root-user"]),
                            "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


def run_isolated(script: Path, inputs: dict[str, Path], root: Path, dataset_root: Path,
                  budget_s: float | None) -> tuple[subprocess.CompletedProcess, str]:
    env = {**os.environ, "PIPELINE_KAGGLE_TMP": str(root / "tmp")}
    isolated = namespaces_work()
    if isolated:
        Path("/kaggle").mkdir(exist_ok=True)  # a mount point (root only), empty outside the run's namespace
        command, isolation = _namespaced(script, inputs, root, dataset_root), \
            "network namespace, inputs read-only bind mounts under /kaggle"
    else:
        hook = root / "no-network"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(BLOCK_SOCKETS)
        for slug, source in inputs.items():
            if source != root / "input" / slug:
                shutil.copytree(source, root / "input" / slug, symlinks=True)
        subprocess.run(["chmod", "-R", "a-w", str(root / "input")], check=True)
        env |= {"PIPELINE_KAGGLE_INPUT": str(root / "input"), "PIPELINE_KAGGLE_WORKING": str(root / "working"),
                "PYTHONPATH": os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])}
        command = [sys.executable, str(script)]
        isolation = "no namespaces here: sockets refused by an audit hook, inputs copies without write permission"
    try:
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=budget_s), isolation
    except subprocess.TimeoutExpired:
        raise PipelineError(f"the notebook ran past the {duration(budget_s)} of --budget and was stopped; give it a larger "
                            "--budget, a lighter --tta or fewer runs") from None
    finally:
        if isolated:  # the mount point, empty outside the namespace (also one a killed rehearsal left)
            with contextlib.suppress(OSError):  # another rehearsal may be using it now, or it is Kaggle's own
                Path("/kaggle").rmdir()
        if not isolated:
            subprocess.run(["chmod", "-R", "u+w", str(root / "input")], check=False)


def _namespaced(script: Path, inputs: dict[str, Path], root: Path, dataset_root: Path) -> list[str]:
    """The command running `script` in new network and mount namespaces: /kaggle a tmpfs holding read-only bind
    mounts of the inputs and a bind mount of the working folder; dataset/ (the training entries' links lead
    there) read-only too."""
    q = shlex.quote
    read_only = [(source.resolve(), f"/kaggle/input/{slug}") for slug, source in inputs.items()]
    read_only.append((dataset_root.resolve(), str(dataset_root.resolve())))
    steps = ["set -e", "mount --make-rprivate /", "mount -t tmpfs tmpfs /kaggle", "mkdir -p /kaggle/working",
             f"mount --bind {q(str(root / 'working'))} /kaggle/working"]
    for source, at in read_only:
        steps += [f"mkdir -p {q(at)}", f"mount --bind {q(str(source))} {q(at)}", f"mount -o remount,bind,ro {q(at)}"]
    steps.append(f"exec {q(sys.executable)} {q(str(script))}")
    return ["unshare", "--net", "--mount", *([] if os.geteuid() == 0 else ["--map-root-user"]), "sh", "-c",
            "\n".join(steps)]
