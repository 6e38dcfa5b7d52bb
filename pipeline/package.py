"""`pipeline package`: a Kaggle code-competition submission built from runs. Kaggle re-runs a notebook with the
internet off, its inputs mounted read-only under /kaggle/input and the hidden test set in place of the public one;
the package holds what that notebook needs:
- `weights/`: a dataset of the runs' inference checkpoints (weights, or their EMA, and config; no optimizer state),
  the competition's description and `members.json`;
- `wheels/`: a dataset of this project's wheel and of every package the prediction imports that Kaggle's image lacks;
- `notebook/`: the notebook and its `kernel-metadata.json` (internet off), which installs from `wheels/` with pip
  `--no-index` and predicts /kaggle/input/<competition> into /kaggle/working/submission.csv (`kaggle_predict`).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.competition import read_competition, write_competition
from pipeline.errors import PipelineError
from pipeline.workspace import created_folder, read_json, weights_dir, write_text_atomic

# What Kaggle's Python image brings (the GPU image's versions the GPU check runs with, docs/gpu.md): its packages
# are left out of the wheels dataset. Anything else the prediction imports is carried as a wheel.
KAGGLE_IMAGE = ("torch", "torchvision", "timm", "numpy", "pandas", "pillow", "rich", "safetensors", "tqdm",
                "typing_extensions", "python-dateutil", "pyyaml", "scipy", "scikit-learn", "matplotlib",
                "huggingface-hub", "typer", "click", "requests", "six", "filelock", "fsspec", "jinja2", "networkx",
                "sympy", "packaging", "markupsafe", "mpmath", "pygments", "markdown-it-py", "mdurl", "pytz",
                "tzdata", "certifi", "urllib3", "idna", "charset-normalizer", "setuptools", "triton")
KAGGLE_LIMIT_S = 9 * 3600  # a notebook's run time on Kaggle
MARGIN = 0.8  # the share of the time budget a package plans to use
KAGGLE_PYTHON = "3.11"  # wheels of packages Kaggle lacks are fetched for its Python and platform
KAGGLE_PLATFORM = "manylinux2014_x86_64"
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{2,48}[a-z0-9]$")  # Kaggle's dataset and kernel slugs


@dataclass(frozen=True)
class MemberCost:
    checkpoint: Path
    score: float | None  # its best val score (None: a --full run), by `metric`
    metric: str
    seconds_per_view: float  # per test image and TTA view, measured on this machine


@dataclass(frozen=True)
class Plan:
    members: list[MemberCost]
    tta: str
    estimate_s: float  # predicting `images` test images with them on this machine
    images: int
    trimmed: list[str]  # what was left out to fit the budget, in words


@dataclass(frozen=True)
class Package:
    folder: Path
    weights: Path  # the weights dataset's folder
    wheels: Path
    notebook: Path  # the kernel's folder
    plan: Plan  # its members and TTA, and their time on this machine
    wheel_files: list[str]
    left_out: list[str]  # imported by the prediction, and in Kaggle's image: not carried


def measure_members(checkpoints: list[Path], dataset_root: Path, device: str = "auto",
                    sample: int = 256) -> list[MemberCost]:
    """Each checkpoint's seconds per test image and view, timed on `sample` of dataset/'s test images after a
    batch of warm-up, with its best val score."""
    import torch

    from pipeline.cache import cached_test_images
    from pipeline.infer import default_batch_size, infer, load_model
    from pipeline.layout import check_test, dataset_classes
    from pipeline.predict import check_fits
    from pipeline.run import load_checkpoint
    from pipeline.runtime import resolve_runtime

    runtime = resolve_runtime(device)
    _, images, _ = cached_test_images(dataset_root, check_test(dataset_root))
    images, batch = images[:sample], default_batch_size(runtime.device)
    known = dataset_classes(dataset_root)
    costs = []
    for path in checkpoints:
        model, config = load_model(path, runtime.device)
        check_fits(path, config, images, dataset_root, known)  # of this competition, as predict checks
        infer(model, images[:batch], config.inputs, "none", runtime, batch)  # warm-up
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        infer(model, images, config.inputs, "none", runtime, batch)
        score = load_checkpoint(path).get("best_score")
        costs.append(MemberCost(path, None if score is None else float(score), config.metric,
                                (time.perf_counter() - started) / len(images)))
    return costs


def fit_budget(costs: list[MemberCost], tta: str, images: int, budget_s: float) -> Plan:
    """The members and TTA that predict `images` test images within `budget_s` on this machine: as asked if they
    fit; else fewer TTA views first (lighter choices of --tta), then, one at a time, the member of the least value
    per second (`goodness` over its seconds per image). Nothing fits: one line saying what one image costs."""
    from pipeline.infer import TTA_VIEWS

    def estimate(members: list[MemberCost], views: str) -> float:
        return images * len(TTA_VIEWS[views]) * sum(m.seconds_per_view for m in members)

    members, trimmed = list(costs), []
    lighter = sorted((t for t in TTA_VIEWS if len(TTA_VIEWS[t]) < len(TTA_VIEWS[tta])), key=lambda t: -len(TTA_VIEWS[t]))
    for choice in lighter:
        if estimate(members, tta) <= budget_s:
            break
        trimmed.append(f"--tta {tta} → {choice}")
        tta = choice
    while estimate(members, tta) > budget_s and len(members) > 1:
        dropped = min(members, key=lambda m: goodness(m, members) / m.seconds_per_view)
        members.remove(dropped)
        trimmed.append(f"{dropped.checkpoint} (val {dropped.metric} {dropped.score:.4g})" if dropped.score is not None
                       else f"{dropped.checkpoint}")
    if estimate(members, tta) > budget_s:
        raise PipelineError(f"{members[0].checkpoint}: alone and without TTA it predicts an image in "
                            f"{members[0].seconds_per_view * 1000:.1f} ms here, {duration(estimate(members, tta))} "
                            f"for {images} test images, over the {duration(budget_s)} it may take ({MARGIN:.0%} of "
                            "--budget); predict on a GPU")
    return Plan(members, tta, estimate(members, tta), images, trimmed)


def duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def goodness(member: MemberCost, members: list[MemberCost]) -> float:
    """A member's val score as a value from 0 to 1, higher better (log loss: exp(-loss), the geometric mean of the
    true class's probability); a run without one (--full) counts as the others' mean."""
    from pipeline.metrics import HIGHER_IS_BETTER

    if member.score is None:
        known = [goodness(m, members) for m in members if m.score is not None]
        return sum(known) / len(known) if known else 1.0
    return member.score if HIGHER_IS_BETTER[member.metric] else math.exp(-member.score)


PLACEHOLDER_OWNER = "your-kaggle-username"  # a package built without credentials, to rehearse only


def kaggle_username(required: bool) -> str:
    """The Kaggle user of this machine's credentials (KAGGLE_USERNAME, else kaggle.json's username); without
    credentials PLACEHOLDER_OWNER, unless `required` (to push)."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    config = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle") / "kaggle.json"
    try:
        username = json.loads(config.read_text()).get("username")
    except (OSError, ValueError, AttributeError):
        username = None
    if isinstance(username, str) and username:
        return username
    if required:
        raise PipelineError(f"no Kaggle username in KAGGLE_USERNAME or {config}: give the datasets' owner with --owner")
    return PLACEHOLDER_OWNER


def package_target(dataset_root: Path) -> str:
    """The competition dataset/ was fetched from; for the offline sample (CIFAR-10's shape), cifar-10."""
    from pipeline.fetch import DEFAULT_COMPETITION, SAMPLE, fetched_source
    from pipeline.submit import submission_target

    return DEFAULT_COMPETITION if fetched_source(dataset_root) == SAMPLE else submission_target(dataset_root)


def slug_of(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:50].strip("-")
    return slug if SLUG.match(slug) else f"pipeline-{slug}".strip("-")[:50]


def package(runs: list[list[Path]], competition: str, owner: str, out: Path, dataset_root: Path, tta: str = "flip",
            gpu: bool = True, budget_s: float = KAGGLE_LIMIT_S, test_images: int | None = None,
            device: str = "auto") -> Package:
    """Write the package of the `runs`' checkpoints (each run's: a CV's folds, which share its weight as in `predict`)
    for `competition` into `out` (which must not exist yet), with the members and TTA that predict `test_images`
    (default: as many as dataset/'s test set) within MARGIN of `budget_s`, as timed on this machine."""
    from pipeline.layout import check_test
    from pipeline.predict import check_distinct

    for name, value in (("--competition", competition), ("--owner", owner)):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", value or ""):
            raise PipelineError(f"{name} {value!r}: a Kaggle name of letters, digits, - and _; give it as in the "
                                "competition's or your profile's address")
    if out.exists():
        raise PipelineError(f"{out}: already exists; choose another --out (a new folder)")
    for inside, what in ((dataset_root, "the competition's files"), (weights_dir(), "the runs")):
        if out.resolve().is_relative_to(inside.resolve()):
            raise PipelineError(f"{out}: inside {inside} ({what}); choose an --out outside {inside} (default: "
                                "submissions/<competition>-package)")
    checkpoints = [path for run in runs for path in run]
    if not checkpoints:
        raise PipelineError("name at least one run to package")
    check_distinct(checkpoints)
    images = test_images or len(check_test(dataset_root))
    plan = fit_budget(measure_members(checkpoints, dataset_root, device), tta, images, budget_s * MARGIN)
    kept = {member.checkpoint for member in plan.members}
    kept_runs = [[path for path in run if path in kept] for run in runs]
    with created_folder(out, whole=True):
        weights_slug, wheels_slug = slug_of(f"{competition}-pipeline-weights"), slug_of("pipeline-wheels")
        members = _weights_dataset(plan, [run for run in kept_runs if run], out / "weights", dataset_root, owner,
                                   weights_slug, budget_s)
        wheel_files, left_out = _wheels_dataset(out / "wheels", owner, wheels_slug, [out / "weights" / m for m in members])
        notebook = _notebook(out / "notebook", owner, competition, weights_slug, wheels_slug, gpu)
    return Package(out, out / "weights", out / "wheels", notebook, plan, wheel_files, left_out)


def _metadata(folder: Path, owner: str, slug: str, title: str) -> None:
    write_text_atomic(folder / "dataset-metadata.json", json.dumps(
        {"title": title, "id": f"{owner}/{slug}", "licenses": [{"name": "CC0-1.0"}]}, indent=2) + "\n")


def _weights_dataset(plan: Plan, runs: list[list[Path]], folder: Path, dataset_root: Path, owner: str, slug: str,
                     budget_s: float) -> list[str]:
    """Each member as an inference checkpoint (what `load_model` reads) named by its run, the competition's
    description, and members.json: the files, each run's files (`runs`: a CV's folds weigh as one run), the TTA,
    and the time they were measured to take here."""
    import torch

    from pipeline.predict import member_labels
    from pipeline.run import RunConfig, checkpoint_key, inference_weights, load_checkpoint

    folder.mkdir(parents=True)
    paths = [member.checkpoint for member in plan.members]
    members, names = [], {}
    for path, label in zip(paths, member_labels(paths)):
        checkpoint = load_checkpoint(path)
        RunConfig.of_checkpoint(checkpoint, path)  # a config predict can read
        slim = {"model": inference_weights(checkpoint, path), "config": checkpoint["config"],
                "epoch": checkpoint["epoch"], "best_score": checkpoint.get("best_score")}
        torch.save(slim, folder / f"{label}.pt")
        members.append(f"{label}.pt")
        names[path] = f"{label}.pt"
    write_competition(folder, read_competition(dataset_root))  # the shape the runs were trained on
    estimate = {"seconds": round(plan.estimate_s, 1), "test_images": plan.images, "measured_on": device_name(),
                "budget_s": budget_s, "trimmed": plan.trimmed}
    keys = {name: checkpoint_key(folder / name) for name in members}  # what the rehearsal checks it runs
    write_text_atomic(folder / "members.json", json.dumps({
        "checkpoints": members, "runs": [[names[path] for path in run] for run in runs], "keys": keys, "tta": plan.tta,
        "estimate": estimate}, indent=2) + "\n")
    _metadata(folder, owner, slug, f"{slug} (pipeline package)"[:50])
    return members


def runtime_distributions(checkpoints: list[Path]) -> set[str]:
    """The distributions a fresh Python imports to load the checkpoints' models and predict with them (measured in
    a subprocess, so it holds for these models whatever this process has imported)."""
    probe = ("import importlib.metadata as m, sys, torch; from pathlib import Path\n"
             "import pipeline.predict, pipeline.infer\n"
             f"for path in {[str(path) for path in checkpoints]!r}:\n"
             "    pipeline.infer.load_model(Path(path), torch.device('cpu'))\n"
             "names = m.packages_distributions()\n"
             "print('\\n'.join(sorted({d for mod in list(sys.modules) for d in names.get(mod.split('.')[0], [])})))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise PipelineError(f"{checkpoints[0].parent}: cannot load the package's models to see what they import ({last})")
    return {line.strip().lower().replace("_", "-") for line in done.stdout.splitlines() if line.strip()}


def _wheels_dataset(folder: Path, owner: str, slug: str, members: list[Path]) -> tuple[list[str], list[str]]:
    """This project's wheel, and a wheel for Kaggle's Python of each other package prediction imports that
    Kaggle's image lacks; returns the wheel files and the packages left out as Kaggle's."""
    from importlib.metadata import version

    folder.mkdir(parents=True)
    needed = runtime_distributions(members) - {"pipeline"}
    image = {name.replace("_", "-") for name in KAGGLE_IMAGE}
    left_out = sorted(needed & image)
    carried = sorted(needed - image - {name for name in needed if name.startswith(("nvidia-", "cuda-"))})
    source = Path(__file__).resolve().parents[1]
    if not (source / "pyproject.toml").is_file():
        raise PipelineError(f"{source}: no pyproject.toml to build this project's wheel from; package from a clone")
    with tempfile.TemporaryDirectory() as copy:  # setuptools writes build/ and *.egg-info beside the sources
        for name in ("pyproject.toml", "README.md"):
            shutil.copyfile(source / name, Path(copy) / name)
        shutil.copytree(source / "pipeline", Path(copy) / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
        wheel = ["wheel", "--no-deps", "--wheel-dir", str(folder.resolve()), copy]
        try:  # with this environment's setuptools, offline; an older one than pyproject.toml asks for fails
            _pip([*wheel, "--no-build-isolation"], "build this project's wheel")
        except PipelineError:  # then pip builds it with the setuptools it downloads
            _pip(wheel, "build this project's wheel")
    if carried:
        _pip(["download", "--only-binary=:all:", "--no-deps", "--python-version", KAGGLE_PYTHON, "--platform",
              KAGGLE_PLATFORM, "--dest", str(folder), *(f"{name}=={version(name)}" for name in carried)],
             f"download wheels of {', '.join(carried)} for Kaggle's Python {KAGGLE_PYTHON}")
    _metadata(folder, owner, slug, "pipeline wheels")
    return sorted(p.name for p in folder.glob("*.whl")), left_out


def _pip(arguments: list[str], what: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *arguments],
                          capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise PipelineError(f"pip could not {what} ({last}); check the package index can be reached")


NOTEBOOK_CELLS = (
    '''# Offline inference with `pipeline` (built by `pipeline package`): install from the wheels dataset (no internet).
import os, subprocess, sys, time
from pathlib import Path

INPUT = Path(os.environ.get("PIPELINE_KAGGLE_INPUT", "/kaggle/input"))
WORKING = Path(os.environ.get("PIPELINE_KAGGLE_WORKING", "/kaggle/working"))
SCRATCH = Path(os.environ.get("PIPELINE_KAGGLE_TMP", "/tmp"))
COMPETITION, WEIGHTS, WHEELS = INPUT / "{competition}", INPUT / "{weights}", INPUT / "{wheels}"

started, wheels, packages = time.monotonic(), sorted(WHEELS.glob("*.whl")), SCRATCH / "pipeline-packages"
if not wheels:
    sys.exit(f"error: {{WHEELS}}: no wheels; attach the package's wheels dataset to the notebook")
subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target",
                str(packages), *map(str, wheels)], check=True)
sys.path.insert(0, str(packages))
import pipeline
if not Path(pipeline.__file__).is_relative_to(packages):
    sys.exit(f"error: pipeline was imported from {{pipeline.__file__}}, not from the wheels dataset")
setup_s = time.monotonic() - started
print(f"installed {{len(wheels)}} wheels offline in {{setup_s:.1f}}s: pipeline {{pipeline.__version__}}")''',
    '''from pipeline.errors import PipelineError
from pipeline.package import kaggle_predict

try:
    kaggle_predict(COMPETITION, WEIGHTS, WORKING, SCRATCH / "pipeline-project", setup_s)
except PipelineError as e:
    print(f"error: {{e}}", file=sys.stderr)
    raise SystemExit(1)''',
)


def _notebook(folder: Path, owner: str, competition: str, weights: str, wheels: str, gpu: bool) -> Path:
    folder.mkdir(parents=True)
    cells = [cell.format(competition=competition, weights=weights, wheels=wheels) for cell in NOTEBOOK_CELLS]
    notebook = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                           "source": cell.splitlines(keepends=True)} for cell in cells],
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                             "language_info": {"name": "python"}},
                "nbformat": 4, "nbformat_minor": 5}
    write_text_atomic(folder / "predict.ipynb", json.dumps(notebook, indent=1) + "\n")
    slug = slug_of(f"{competition}-pipeline-predict")
    write_text_atomic(folder / "kernel-metadata.json", json.dumps(
        {"id": f"{owner}/{slug}", "title": slug, "code_file": "predict.ipynb", "language": "python",
         "kernel_type": "notebook", "is_private": True, "enable_gpu": gpu, "enable_tpu": False,
         "enable_internet": False, "dataset_sources": [f"{owner}/{weights}", f"{owner}/{wheels}"],
         "competition_sources": [competition], "kernel_sources": [], "model_sources": []}, indent=2) + "\n")
    return folder


def notebook_script(notebook: Path) -> str:
    """The notebook's code cells as one script (what the rehearsal runs)."""
    cells = json.loads(notebook.read_text())["cells"]
    return "\n\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code") + "\n"


def package_classes(weights: Path) -> list[str]:
    """The classes the package's models predict (its first member's)."""
    from pipeline.run import RunConfig, load_checkpoint

    first = package_members(weights)["runs"][0][0]
    return RunConfig.of_checkpoint(load_checkpoint(first), first).classes


def device_name() -> str:
    import torch

    from pipeline.precision import cpu_model

    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"{cpu_model()}, {os.cpu_count()} cores"


def package_members(weights: Path) -> dict:
    """members.json of a package's weights dataset: its `runs` (each a list of model files there, a CV's folds
    together) as paths, and its `tta`; anything else is one line naming it."""
    from pipeline.config import TTA_CHOICES

    path = weights / "members.json"
    try:
        members = read_json(path)
    except (OSError, ValueError) as e:
        raise PipelineError(f"{path}: unreadable ({e}); build the package again") from None
    runs = members.get("runs") if isinstance(members, dict) else None
    if not (isinstance(runs, list) and runs and all(isinstance(run, list) and run and all(
            isinstance(name, str) and (weights / name).is_file() for name in run) for run in runs)):
        raise PipelineError(f"{path}: its runs are not lists of the dataset's model files; build the package again")
    if members.get("tta") not in TTA_CHOICES:
        raise PipelineError(f"{path}: its tta {members.get('tta')!r} is not one of {', '.join(TTA_CHOICES)}; build the "
                            "package again")
    return {**members, "runs": [[weights / name for name in run] for run in runs]}


def kaggle_predict(competition: Path, weights: Path, working: Path, project: Path, setup_s: float) -> None:
    """In the notebook: lay out `competition` (read-only) as `project`'s dataset/ with the package's description,
    predict it with the package's checkpoints into `working`/submission.csv, and record the time it took."""
    from rich.console import Console

    from pipeline.predict import predict
    from pipeline.rehearse import TIMING

    if not competition.is_dir():
        raise PipelineError(f"{competition}: the competition's data is not there; add the competition to the notebook")
    members = package_members(weights)
    started = time.monotonic()
    shutil.rmtree(project, ignore_errors=True)
    dataset = project / "dataset"
    dataset.mkdir(parents=True)
    for entry in competition.iterdir():
        if entry.name != "competition.json":
            (dataset / entry.name).symlink_to(entry)
    shutil.copyfile(weights / "competition.json", dataset / "competition.json")
    os.chdir(project)
    result = predict(checkpoint_groups=members["runs"], tta=members["tta"],
                     dataset_root=dataset, out=working / "submission.csv", console=Console())
    predict_s = time.monotonic() - started
    write_text_atomic(working / TIMING, json.dumps({"setup_s": setup_s, "predict_s": predict_s, "images": result.rows,
                                                    "device": device_name()}, indent=2) + "\n")
    print(f"wrote {result.submission}: {result.rows} rows in {predict_s:.1f}s")
