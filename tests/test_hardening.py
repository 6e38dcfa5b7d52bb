"""Hostile archives, broken data, crashes, full disks, untrusted weights: every case is one clear error
(or a documented recovery), a non-zero exit, and nothing already there is damaged. README: *Hardening*."""
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pipeline.cli import app
from pipeline.config import TrainConfig
from pipeline.errors import PipelineError
from pipeline.fetch import MARKER, ExtractLimits, fetch
from pipeline.predict import predict
from pipeline.train import train
from tests.conftest import SECRET_KEY
from tests.fixtures import QUICK, kaggle_zip, runner, write_competition

py7zr = pytest.importorskip("py7zr")  # not in a GPU machine image


def competition_zip_with(tmp_path, competition, extra: dict[str, bytes] = None, inner_7z: dict = None,
                         symlink: str | None = None) -> Path:
    """The tiny competition's Kaggle zip plus hostile members: `extra` zip members, `inner_7z` members
    added to train.7z (names unchecked), or a zip symlink member named `symlink`."""
    out = tmp_path / "hostile.zip"
    kaggle_zip(competition, out)
    if inner_7z:
        with zipfile.ZipFile(out) as z:
            members = {name: z.read(name) for name in z.namelist() if name != "train.7z"}
        train_7z = tmp_path / "train.7z"
        with py7zr.SevenZipFile(train_7z, "w") as sz:
            sz.writeall(competition / "train", "train")
            for name, data in inner_7z.items():
                sz._writestr(data, name)  # the public writestr refuses such names: that is the point
        with zipfile.ZipFile(out, "w") as z:
            z.write(train_7z, "train.7z")
            for name, data in members.items():
                z.writestr(name, data)
    with zipfile.ZipFile(out, "a") as z:
        for name, data in (extra or {}).items():
            z.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)  # S_IFLNK
            z.writestr(info, "/etc/passwd")
    return out


def assert_nothing_written(project):
    root = project / "dataset"
    assert not (root / "train").exists() and not (root / MARKER).exists()
    assert not list(root.glob(".staging-*"))
    assert not (project.parent / "evil.txt").exists() and not Path("/tmp/evil-pipeline.txt").exists()


# --- archives -------------------------------------------------------------------------------------

@pytest.mark.parametrize("hostile, message", [
    (dict(extra={"../evil.txt": b"x"}), "refusing member '../evil.txt', which points outside"),
    (dict(extra={"/tmp/evil-pipeline.txt": b"x"}), "refusing member '/tmp/evil-pipeline.txt', which points outside"),
    (dict(symlink="train/link.png"), "refusing member 'train/link.png', which is a link"),
    (dict(inner_7z={"../evil.txt": b"x"}), r"train.7z: refusing member '../evil.txt', which points outside"),
    (dict(inner_7z={"/tmp/evil-pipeline.txt": b"x"}), "train.7z: refusing member '/tmp/evil-pipeline.txt'"),
])
def test_archive_members_outside_the_target_are_refused(competition, project, tmp_path, hostile, message):
    with pytest.raises(PipelineError, match=message):
        fetch(archive=competition_zip_with(tmp_path, competition, **hostile))
    assert_nothing_written(project)


def test_7z_symlink_member_is_refused(competition, project, tmp_path):
    link = tmp_path / "link.png"
    link.symlink_to("/etc/passwd")
    archive = competition_zip_with(tmp_path, competition, inner_7z={"train/ok.txt": b"x"})
    with zipfile.ZipFile(archive) as z:
        members = {name: z.read(name) for name in z.namelist() if name != "train.7z"}
    with py7zr.SevenZipFile(tmp_path / "train.7z", "w") as sz:
        sz.writeall(competition / "train", "train")
        sz.write(link, "train/link.png")
    with zipfile.ZipFile(archive, "w") as z:
        z.write(tmp_path / "train.7z", "train.7z")
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(PipelineError, match="train.7z: refusing member 'train/link.png', which is a link"):
        fetch(archive=archive)
    assert_nothing_written(project)


def test_decompression_bombs_are_refused_before_extraction(competition, project, tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("train/zeros.bin", b"\0" * (20 << 20))  # 20 MiB that compress to ~20 KiB
    assert bomb.stat().st_size < 100_000
    with pytest.raises(PipelineError, match=r"bomb.zip: refusing to unpack 0.0 GiB, more than the limit of 0.0 GiB"):
        fetch(archive=bomb, limits=ExtractLimits(max_bytes=10 << 20))
    assert_nothing_written(project)
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as z:
        for k in range(300):
            z.writestr(f"train/{k}.txt", b"")
    with pytest.raises(PipelineError, match="many.zip: refusing 300 members, more than the limit of 100"):
        fetch(archive=many, limits=ExtractLimits(max_members=100))
    inner = competition_zip_with(tmp_path, competition, inner_7z={"train/zeros.bin": b"\0" * (20 << 20)})
    with pytest.raises(PipelineError, match="train.7z: refusing to unpack"):
        fetch(archive=inner, limits=ExtractLimits(max_bytes=15 << 20))
    assert_nothing_written(project)
    assert fetch(archive=inner, limits=ExtractLimits(max_bytes=100 << 20)).train_images == 400  # limits configurable


def test_dropped_connection_mid_download_is_retried(kaggle, competition_zip, project):
    kaggle.competitions["cifar-10"] = competition_zip.read_bytes()
    kaggle.cut_downloads = 1
    assert fetch().train_images == 400
    assert kaggle.downloads() == 2  # the kaggle client fetched the file again after the cut


def test_partial_download_is_not_trusted(kaggle, competition_zip, project):
    kaggle.competitions["cifar-10"] = competition_zip.read_bytes()
    partial = project / "dataset" / ".download" / "cifar-10.zip"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(competition_zip.read_bytes()[:1000])  # what a killed download leaves
    assert fetch().train_images == 400
    assert partial.read_bytes() == competition_zip.read_bytes()


def test_corrupt_download_is_detected_deleted_and_fetched_anew(kaggle, competition_zip, project):
    data = bytearray(competition_zip.read_bytes())
    data[len(data) // 3: len(data) // 3 + 64] = bytes(64)  # damage inside train.7z's compressed bytes
    kaggle.competitions["cifar-10"] = bytes(data)
    with pytest.raises(PipelineError, match="cifar-10.zip: corrupt or incomplete .*deleted it: run `pipeline fetch` again"):
        fetch()
    assert_nothing_written(project)
    assert not (project / "dataset" / ".download" / "cifar-10.zip").exists()
    kaggle.competitions["cifar-10"] = competition_zip.read_bytes()
    assert fetch().train_images == 400 and kaggle.downloads() == 2


# --- data -----------------------------------------------------------------------------------------

def break_dataset(root: Path) -> list[str]:
    """Eight kinds of damage to the tiny competition; returns what each should be reported as."""
    Image.open(root / "train" / "1.png").save(root / "train" / "2.png")
    (root / "train" / "2.png").write_bytes((root / "train" / "2.png").read_bytes()[:200])  # truncated
    (root / "train" / "3.png").write_bytes(b"GIF89a not a png at all")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "train" / "4.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "train" / "5.png")
    (root / "train" / "6.png").unlink()
    Image.open(root / "train" / "1.png").save(root / "train" / "9999.png")
    labels = pd.read_csv(root / "trainLabels.csv", dtype=str)
    labels.loc[labels["id"] == "7", "label"] = ""
    labels = pd.concat([labels, labels[labels["id"] == "8"]])
    labels.to_csv(root / "trainLabels.csv", index=False)
    return ["trainLabels.csv: id 8 appears 2 times", "trainLabels.csv: id 7 has no label",
            "train/6.png: missing (listed in trainLabels.csv)", "train/9999.png: not listed in trainLabels.csv",
            "train/2.png: not a readable image", "train/3.png: not a readable image",
            "train/4.png: is 16×16, not 32×32 like the set", "train/5.png: is greyscale (L) in a colour set"]


def test_every_data_problem_is_listed_before_training_and_skip_bad_trains_on_the_rest(fetched):
    expected = break_dataset(fetched / "dataset")
    with pytest.raises(PipelineError) as refused:
        train(TrainConfig(epochs=1, **QUICK))
    message = str(refused.value)
    assert "\n" not in message and "8 problem(s) in the training data" in message
    assert all(problem in message for problem in expected[:5]) and "and 3 more" in message
    assert "pass --skip-bad to train on the rest" in message
    assert not (fetched / "weights").exists()  # nothing trained: no run folder, nor the weights/ it made

    result = train(TrainConfig(epochs=1, skip_bad=True, **QUICK))
    skipped = (result.run_dir / "skipped.txt").read_text().splitlines()
    assert len(skipped) == 8 and all(any(line.startswith(p) for line in skipped) for p in expected)
    config = pd.read_json(result.run_dir / "config.json", typ="series")
    assert config["skipped"] == 8 and config["split"]["train_images"] + config["split"]["val_images"] == 400 - 7


def test_structural_csv_problems_and_an_empty_test_folder(fetched):
    root = fetched / "dataset"
    labels = (root / "trainLabels.csv").read_text()
    (root / "trainLabels.csv").write_text(labels.replace("id,label", "id,class", 1))
    with pytest.raises(PipelineError, match="trainLabels.csv: missing column\\(s\\) label \\(found: id, class\\)"):
        train(TrainConfig(epochs=1, skip_bad=True, **QUICK))
    (root / "trainLabels.csv").write_text(labels)
    train(TrainConfig(epochs=1, limit=40, **QUICK))
    shutil.rmtree(root / "test")
    (root / "test").mkdir()
    with pytest.raises(PipelineError, match="test: 40 id\\(s\\) of sampleSubmission.csv have no image: 1.png, 2.png"):
        predict()


# --- checkpoints and weights ------------------------------------------------------------------------

class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/pipeline-pwned",))


def test_untrusted_and_broken_checkpoints_are_refused(fetched):
    run = train(TrainConfig(epochs=1, limit=40, **QUICK)).run_dir
    torch.save({"model": RunsCode(), "config": {}, "epoch": 1}, fetched / "evil.pt", pickle_module=pickle)
    for args in (["predict", "--checkpoint", "evil.pt"], ["train", "--pretrained", "evil.pt", "--epochs", "1"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "evil.pt: refused: it holds pickled objects other than tensors" in result.output
    assert not Path("/tmp/pipeline-pwned").exists()

    good = (run / "best.pt").read_bytes()
    (fetched / "truncated.pt").write_bytes(good[:len(good) // 2])
    result = runner.invoke(app, ["predict", "--checkpoint", "truncated.pt"])
    assert result.exit_code == 1 and result.output.startswith("error: truncated.pt: not a readable PyTorch file")

    other = torch.load(run / "best.pt", weights_only=True)
    other["config"]["classes"] = other["config"]["classes"] + ["extra"]  # a checkpoint for 5 classes
    torch.save(other, fetched / "other.pt")
    result = runner.invoke(app, ["predict", "--checkpoint", "other.pt"])
    assert result.exit_code == 1 and "other.pt: weights do not fit its configured model" in result.output

    (fetched / "weights" / "empty").mkdir()
    assert "weights/empty: no best.pt" in runner.invoke(app, ["predict", "--run", "weights/empty"]).output
    resumed = runner.invoke(app, ["train", "--resume", "weights/empty"])
    assert resumed.exit_code == 1 and "weights/empty: not a run folder (no config.json, no last.pt): nothing to " \
        "resume" in " ".join(resumed.output.split())


# --- crashes, full and read-only disks ----------------------------------------------------------------

def test_predict_killed_mid_run_leaves_the_previous_submission(fetched, tmp_path):
    root = fetched / "dataset"
    shutil.rmtree(root)
    write_competition(root, n_train=200, n_test=3000, seed=1)
    train(TrainConfig(epochs=1, **QUICK))
    predict(tta="none")
    submission = fetched / "submissions" / "submission.csv"
    before = submission.read_bytes()
    process = subprocess.Popen([sys.executable, "-m", "pipeline", "predict", "--tta", "flip-shift", "--batch-size", "16",
                                "--device", "cpu"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(4)
    assert process.poll() is None, "predict finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert submission.read_bytes() == before


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) -> a fresh tmpfs of that size (root can mount one; elsewhere the test is skipped)."""
    mounted = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)])


def test_full_disk_while_writing_a_checkpoint_or_submission(fetched, tmpfs):
    from pipeline.run import save_checkpoint
    from pipeline.workspace import write_text_atomic
    tiny_disk = tmpfs("256k")
    earlier = tiny_disk / "last.pt"
    save_checkpoint(earlier, {"model": {"w": torch.zeros(100)}, "epoch": 1, "config": {}})
    before = earlier.read_bytes()
    with pytest.raises(PipelineError, match=r"last.pt: cannot write it: no space left on the device; make room, then go on; any earlier version of it is intact"):
        save_checkpoint(earlier, {"model": {"w": torch.zeros(200_000)}, "epoch": 2, "config": {}})
    assert earlier.read_bytes() == before and sorted(p.name for p in tiny_disk.iterdir()) == ["last.pt"]
    (tiny_disk / "submission.csv").write_text("id,label\n1,apple\n")
    with pytest.raises(PipelineError, match=r"submission.csv: cannot write it: no space left on the device; make room"):
        write_text_atomic(tiny_disk / "submission.csv", "id,label\n" + "1,apple\n" * 100_000)
    assert (tiny_disk / "submission.csv").read_text() == "id,label\n1,apple\n"


def test_read_only_output_folder(fetched, tmpfs):
    run = train(TrainConfig(epochs=1, limit=40, **QUICK)).run_dir
    tiny_disk = tmpfs("400m")
    shutil.copytree(run, tiny_disk / "exp", ignore=shutil.ignore_patterns("tb", "*.png"))
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    before = (tiny_disk / "exp" / "last.pt").read_bytes()
    result = runner.invoke(app, ["train", "--resume", str(tiny_disk / "exp"), "--epochs", "2"])
    assert result.exit_code == 1 and "\n" not in result.output.strip()
    assert "the file system is read-only; make the folder writable, then go on" in result.output, result.output
    assert (tiny_disk / "exp" / "last.pt").read_bytes() == before


# --- secrets ------------------------------------------------------------------------------------------

def test_kaggle_key_never_reaches_logs_configs_or_errors(kaggle, competition_zip, project):
    kaggle.competitions["cifar-10"] = competition_zip.read_bytes()
    outputs = [runner.invoke(app, args).output for args in (
        ["fetch"], ["train", "--epochs", "1", "--limit", "40", "--workers", "0", "--batch-size", "32"],
        ["predict", "--tta", "none"], ["submit", "-m", "first"], ["runs"], ["report", "exp"])]
    kaggle.status = 401
    outputs += [runner.invoke(app, ["fetch", "--force"]).output, runner.invoke(app, ["submit", "-m", "x"]).output]
    kaggle.status = None
    kaggle.competitions.clear()
    outputs.append(runner.invoke(app, ["fetch", "--force", "--competition", "nothing"]).output)
    assert all(SECRET_KEY not in output for output in outputs)
    artifacts = [p for p in project.rglob("*") if p.is_file()]
    assert len(artifacts) > 20
    leaked = [str(p) for p in artifacts if SECRET_KEY.encode() in p.read_bytes()]
    assert leaked == []
