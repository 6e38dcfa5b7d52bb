"""Issue 16: every input class that once gave a wrong result with exit status 0, or a traceback, now gives the
right result or a one-line error (inputs made here; the checks against the work use others of each class)."""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from rich.console import Console

from pipeline.cache import decode_images, metadata_seal
from pipeline.cli import app
from pipeline.competition import read_csv_text
from pipeline.config import TrainConfig
from pipeline.dataset import channel_stats, training_arrays
from pipeline.errors import PipelineError
from pipeline.layout import id_sort_key, load_train_set
from pipeline.predict import ensemble, predict
from pipeline.progress import plain_progress
from pipeline.run import Run, load_checkpoint, save_checkpoint
from pipeline.train import resume, train
from tests.fixtures import QUICK, fabricate_run, runner, write_competition

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """`pipeline …` in a fresh process (shell redirections and pipes as a user types them go in `kwargs`)."""
    command = [sys.executable, "-c", "from pipeline.cli import main; main()", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run(command, cwd=cwd, env=env, text=True, capture_output="stdout" not in kwargs, **kwargs)


# --- 1. a diverged run -----------------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"lr": float("nan")}, "--lr nan: must be a finite number > 0"),
    ({"lr": float("inf")}, "--lr inf: must be a finite number > 0"),
    ({"lr": -0.1}, "--lr -0.1: must be a finite number > 0"),
    ({"momentum": 1.5}, r"--momentum 1.5: must be a finite number in \[0, 1\)"),
    ({"momentum": float("nan")}, "--momentum nan"),
    ({"weight_decay": -1e-4}, "--weight-decay -0.0001: must be a finite number ≥ 0"),
    ({"gamma": float("nan")}, "--gamma nan"),
    ({"ema": 1.5}, r"--ema 1.5: must be a finite number in \[0, 1\)"),
    ({"label_smoothing": float("inf")}, "--label-smoothing inf"),
    ({"val_fraction": 0.0}, r"--val-fraction 0: .*pass --full"),
    ({"name": "a/b"}, "--name 'a/b': a run name is one folder name under weights/"),
    ({"name": "../x"}, "--name '../x'"),
    ({"name": "/tmp/x"}, "--name '/tmp/x'"),
    ({"seed": -1}, r"--seed must be in \[0, 2\^32\), got -1"),
    ({"name": ".."}, "--name '..'"),
    ({"name": ".hidden"}, "no leading dot"),
])
def test_options_that_make_no_sense_are_refused(fetched, options, message):
    with pytest.raises(PipelineError, match=message):
        train(TrainConfig(epochs=1, **{**QUICK, **options}))


def test_a_diverging_run_stops_at_the_first_non_finite_loss_and_keeps_its_last_good_epoch(trained):
    # epoch 1 trains at 0.02; from epoch 2 the step schedule multiplies it by 1e15
    with pytest.raises(PipelineError, match=r"weights/blowup: the training loss became (nan|inf) at step \d+ in "
                                            r"epoch 2: training diverged; last.pt keeps epoch 1, best.pt epoch 1"):
        train(TrainConfig(epochs=4, milestones=[1], gamma=1e15, name="blowup", **QUICK))
    run = Run(trained / "weights" / "blowup")
    assert load_checkpoint(run.last)["epoch"] == 1 and run.read_status()["state"] == "failed"
    assert pd.read_csv(run.path / "metrics.csv")["epoch"].tolist() == [1]
    with pytest.raises(PipelineError, match="nothing was kept"):  # diverged in its first epoch: no run is left
        train(TrainConfig(epochs=2, name="at-once", **{**QUICK, "lr": 1e15}))
    assert not (trained / "weights" / "at-once").exists()
    assert predict(tta="none").members == ["exp.probs.npy"]  # the newest finished run, not the failed ones


def test_weights_that_turn_non_finite_in_an_epochs_last_step_are_not_saved(fetched, monkeypatch):
    """--full has no val loss to show it: the weights themselves are checked before a save."""
    import pipeline.train as training
    real = training.train_one_epoch

    def last_step_overflows(ctx):
        result = real(ctx)
        if ctx.epoch == 2:
            next(ctx.model.parameters()).data.fill_(float("inf"))
        return result

    monkeypatch.setattr(training, "train_one_epoch", last_step_overflows)
    with pytest.raises(PipelineError, match="the weights became non-finite in epoch 2: training diverged; "
                                            "last.pt keeps epoch 1"):
        train(TrainConfig(epochs=3, full=True, limit=64, **QUICK))
    assert load_checkpoint(fetched / "weights" / "exp" / "last.pt")["epoch"] == 1


def test_predict_refuses_non_finite_weights_and_probabilities(trained):
    predict(tta="none")
    submission = trained / "submissions" / "submission.csv"
    before = submission.read_bytes()
    checkpoint = load_checkpoint(trained / "weights" / "exp" / "best.pt")
    weights = checkpoint["model"]
    nan_weights = {**checkpoint, "model": {**weights, "fc.weight": weights["fc.weight"] * float("nan")}}
    save_checkpoint(trained / "nan.pt", nan_weights)
    with pytest.raises(PipelineError, match=r"nan.pt: its weights hold NaN or infinite values"):
        predict(checkpoints=[trained / "nan.pt"], tta="none")
    huge = {**checkpoint, "model": {**weights, "fc.weight": weights["fc.weight"].sign() * 3e38}}  # finite, overflows
    save_checkpoint(trained / "huge.pt", huge)
    with pytest.raises(PipelineError, match=r"huge.pt: the model gives non-finite probabilities for \d+ test images"):
        predict(checkpoints=[trained / "huge.pt"], tta="none", engine="torch", precision="fp32")
    assert submission.read_bytes() == before and not (trained / "submissions" / "huge.probs.npy").exists()


# --- 2. stale caches -------------------------------------------------------------------------------------

def same_size_png(path: Path, pixels: np.ndarray) -> None:
    """Uncompressed PNG: its byte size depends on the image's shape alone."""
    Image.fromarray(pixels).save(path, compress_level=0)


def test_an_image_replaced_by_one_of_the_same_size_and_times_is_decoded_again(tmp_path):
    folder = tmp_path / "test"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(1, 6):
        same_size_png(folder / f"{k}.png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    ids = [str(k) for k in range(1, 6)]
    first = np.array(decode_images(folder, ids, tmp_path / "test.npy").images)
    stat = (folder / "3.png").stat()
    new = 255 - first[2]
    same_size_png(folder / "3.png", new)  # as `cp -p` or `rsync -a` would leave it: same size, same times
    os.utime(folder / "3.png", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (folder / "3.png").stat().st_size == stat.st_size
    assert np.array_equal(decode_images(folder, ids, tmp_path / "test.npy").images[2], new)


def test_ensemble_refuses_probabilities_of_test_images_that_changed(trained):
    predict(tta="none")
    image = trained / "dataset" / "test" / "7.png"
    stat = image.stat()
    pixels = np.asarray(Image.open(image))
    image.write_bytes(b"")
    Image.fromarray(pixels[::-1].copy()).save(image)  # other content, times put back
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(PipelineError, match="exp.probs.npy: made from test images that have changed since"):
        ensemble([Path("exp")])


# --- 3. a checkpoint that does not fit the data -----------------------------------------------------------

def train_elsewhere(tmp_path: Path, **shape) -> Path:
    root = tmp_path / "other"
    write_competition(root / "dataset", **{"n_train": 80, "n_test": 8, **shape})
    train(TrainConfig(epochs=1, **QUICK), root / "dataset", root / "weights", Console(quiet=True))
    return root / "weights" / "exp" / "best.pt"


@pytest.mark.parametrize("shape, message", [
    ({"classes": ("cat", "dog")}, r"trained on 2 classes, .*trainLabels.csv has 4; only the model has cat, dog; "
                                  r"only trainLabels.csv has apple, kiwi, mango, zebra"),
    ({"size": 16}, r"trained on 16×16 colour images, but .*test holds 32×32 colour images; `pipeline fetch "
                   r"(--\S+ \S+ )?--img-size 16` decodes them at the model's size"),
])
def test_a_checkpoint_that_does_not_fit_the_dataset_is_refused(fetched, tmp_path, shape, message):
    checkpoint = train_elsewhere(tmp_path, **shape)
    with pytest.raises(PipelineError, match=message):
        predict(checkpoints=[checkpoint], tta="none")
    assert not (fetched / "submissions" / "submission.csv").exists()


def test_test_images_of_the_other_colour_mode_are_converted_to_the_model_s_and_said(fetched, tmp_path):
    """Pass 34: greyscale test images beside a colour training set were refused at predict, advising another model;
    the images are converted to the model's mode (as inference converts each batch), and a note says so."""
    checkpoint = train_elsewhere(tmp_path, grey=True, size=32, n_train=400, n_test=40)  # this dataset's labels
    console = Console(record=True, width=300)
    predict(checkpoints=[checkpoint], tta="none", console=console)
    assert "trained on 32×32 greyscale images; the test images, 32×32 colour images, are converted to them" in \
        console.export_text()
    assert len(pd.read_csv(fetched / "submissions" / "submission.csv")) == 40


# --- 4. labels --------------------------------------------------------------------------------------------

def respell(project, label: str, *spellings: tuple[str, int]) -> pd.DataFrame:
    """Rewrite trainLabels.csv with the first rows of class `label` spelled otherwise: (spelling, rows) in turn."""
    labels = pd.read_csv(project / "dataset" / "trainLabels.csv", dtype=str)
    rows, start = labels.index[labels["label"] == label], 0
    for spelling, count in spellings:
        labels.loc[rows[start:start + count], "label"] = spelling
        start += count
    labels.to_csv(project / "dataset" / "trainLabels.csv", index=False)
    return labels


def test_labels_differing_in_spaces_or_case_are_one_class(fetched):
    labels = respell(fetched, "zebra", ("zebra ", 3), ("Zebra", 2))
    zebras = labels.index[labels["label"].str.strip().str.lower() == "zebra"]
    data = load_train_set(fetched / "dataset")
    assert data.classes == ["apple", "kiwi", "mango", "zebra"]
    assert data.notes == ["'Zebra' read as 'zebra' (2 rows)", "'zebra ' read as 'zebra' (3 rows)"]
    # spellings about as frequent as each other are classes of their own (letters: 'a' and 'A')
    labels.loc[labels["label"] == "kiwi", "label"] = ["Apple", "apple"] * (len(zebras) // 2)
    labels.to_csv(fetched / "dataset" / "trainLabels.csv", index=False)
    loaded = load_train_set(fetched / "dataset")
    assert loaded.classes == ["Apple", "apple", "mango", "zebra"]
    assert "'Apple' and 'apple' kept as classes of their own" in loaded.notes[-1]  # pass 34: said


def test_one_class_and_too_few_images_for_a_split_say_so_by_name(fetched):
    labels = pd.read_csv(fetched / "dataset" / "trainLabels.csv", dtype=str)
    labels.assign(label="kiwi").to_csv(fetched / "dataset" / "trainLabels.csv", index=False)
    with pytest.raises(PipelineError, match="every usable row has the label 'kiwi'; a classifier needs"):
        train(TrainConfig(epochs=1, **QUICK))
    labels.to_csv(fetched / "dataset" / "trainLabels.csv", index=False)
    result = runner.invoke(app, ["train", "--limit", "5", "--workers", "0"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(
        "error: cannot split 5 images of 4 classes into a stratified 0.2 val split: class(es) ")
    assert "'apple'" in result.output or "'kiwi'" in result.output or "'mango'" in result.output
    assert "--full" in result.output and "least populated" not in result.output  # not scikit-learn's text


# --- 5. resume over changed data --------------------------------------------------------------------------

def test_resume_refuses_data_that_changed_under_the_run(fetched):
    run = train(TrainConfig(epochs=1, **QUICK)).run_dir
    labels = pd.read_csv(fetched / "dataset" / "trainLabels.csv", dtype=str)
    dropped = labels.iloc[:10]
    for image_id in dropped["id"]:
        (fetched / "dataset" / "train" / f"{image_id}.png").unlink()
    labels.iloc[10:].to_csv(fetched / "dataset" / "trainLabels.csv", index=False)
    with pytest.raises(PipelineError, match="not those exp started on .*trained-on images into val"):
        resume(run, {"epochs": 2})
    assert load_checkpoint(run / "last.pt")["epoch"] == 1


# --- 6. images --------------------------------------------------------------------------------------------

def png_declaring(width: int, height: int, colour: bool = True) -> bytes:
    """A tiny PNG whose header declares width × height (its data is far too short for that)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2 if colour else 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_sixteen_bit_grey_is_scaled_and_odd_images_do_not_decide_the_set(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    for k in range(2, 12):
        Image.fromarray(np.full((8, 8), 257 * (20 * k), np.uint16)).save(folder / f"{k}.png")  # 16-bit grey
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / "1.png")  # the odd one comes first
    (folder / "12.png").write_bytes(png_declaring(100_000, 100_000))  # 10^10 pixels declared in 80 bytes
    (folder / "13.png").write_bytes(png_declaring(9_000, 9_000, colour=False))  # under PIL's bomb limit: 243 MB if decoded
    ids = [str(k) for k in range(1, 14)]
    decoded = decode_images(folder, ids, tmp_path / "train.npy")
    assert decoded.images.shape == (13, 8, 8, 1)
    assert [int(decoded.images[k - 1].max()) for k in range(2, 12)] == [20 * k for k in range(2, 12)]  # not 255
    assert decoded.bad == {"1": "is 10×10, not 8×8 like the set",
                           "12": "declares too many pixels to decode safely (a decompression bomb?)",
                           "13": "is 9000×9000, not 8×8 like the set"}


def test_an_image_of_the_other_colour_mode_in_a_test_set_is_converted_and_said(trained):
    test = trained / "dataset" / "test"
    colour = Image.open(test / "7.png").convert("RGB")
    colour.convert("L").save(test / "7.png")  # a greyscale photo among colour ones
    result = runner.invoke(app, ["predict", "--device", "cpu", "--tta", "none"])
    assert result.exit_code == 0, result.output
    assert "1 image(s) not colour like the set, converted to colour to be predicted: 7.png" in " ".join(result.output.split())
    grey = np.load(trained / "submissions" / "exp.probs.npy")
    colour.convert("L").convert("RGB").save(test / "7.png")  # the same image, stored as colour
    assert runner.invoke(app, ["predict", "--device", "cpu", "--tta", "none"]).exit_code == 0
    assert np.array_equal(np.load(trained / "submissions" / "exp.probs.npy"), grey)


def test_swapped_columns_and_an_emptied_checkpoint_say_what_to_fix(trained):
    import torch

    described(trained, id_column="label", label_columns=["id"])
    result = runner.invoke(app, ["train", "--epochs", "1", "--device", "cpu", "--name", "new"])
    assert result.exit_code == 1 and "No usable labeled image is left. Does " in result.output
    assert "competition.json name the right files and columns (its id column 'label', label column(s) 'id', " \
        "train_images 'train')?" in " ".join(result.output.split())
    (trained / "dataset" / "competition.json").unlink()
    best = trained / "weights" / "exp" / "best.pt"
    best.unlink()  # a hard link to the session's run: replaced, not written through
    torch.save({}, best)
    result = runner.invoke(app, ["predict", "--device", "cpu"])
    assert result.exit_code == 1 and "exp/best.pt: not a pipeline checkpoint (no model/config/epoch entries); " \
        "restore it from a copy, or train the run again with `pipeline train`" in " ".join(result.output.split())


# --- tracebacks that are now errors or work ----------------------------------------------------------------

@pytest.fixture
def read_only(tmp_path):
    """bind(folder) -> the same folder mounted read-only (root can; elsewhere the test is skipped)."""
    mounted = []

    def bind(folder: Path) -> Path:
        view = tmp_path / f"ro{len(mounted)}"
        view.mkdir()
        for command in (["mount", "--bind", str(folder), str(view)], ["mount", "-o", "remount,ro,bind", str(view)]):
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                subprocess.run(["umount", str(view)], capture_output=True)
                pytest.skip(f"cannot bind-mount read-only here: {done.stderr.strip()}")
        mounted.append(view)
        return view

    yield bind
    for view in mounted:
        subprocess.run(["umount", "-l", str(view)])


def test_a_read_only_dataset_trains_and_predicts_with_the_cache_in_the_user_cache(project, competition, read_only,
                                                                                  tmp_path, monkeypatch):
    source = tmp_path / "input"
    shutil.copytree(competition, source)
    dataset = read_only(source)  # as Kaggle mounts /kaggle/input
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(tmp_path / "user-cache"))
    result = train(TrainConfig(epochs=1, **QUICK), dataset_root=dataset, console=Console(quiet=True))
    predict(runs=[result.run_dir], tta="none", dataset_root=dataset)
    assert not (dataset / ".cache").exists()
    assert sorted(p.name for p in (tmp_path / "user-cache" / "datasets").glob("*/*.npy")) == ["test.npy", "train.npy"]
    assert (project / "submissions" / "submission.csv").is_file()


def test_a_read_only_project_is_one_line(competition, read_only, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(competition, project / "dataset")
    done = run_cli("train", "--epochs", "1", "--workers", "0", cwd=read_only(project))
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "weights: cannot create it (Read-only file system); work from a folder you can write" in done.stderr


def test_a_last_training_batch_of_one_image_trains(fetched):
    # 400 images, val 0.2 → 320 train; batch 319 leaves a last batch of one
    result = train(TrainConfig(epochs=1, **{**QUICK, "batch_size": 319}))
    assert Run(result.run_dir).read_status()["state"] == "finished"


def test_ids_of_unicode_digits_sort_without_error():
    assert sorted(["10", "²", "2", "١٢", "a"], key=id_sort_key) == ["2", "10", "a", "²", "١٢"]


@pytest.mark.parametrize("members, message", [
    ({"train": b"a file", "train/1.png": b"png"}, "train is both a file and a folder in the archive"),
    ({"train": b"a file", "test/1.png": b"png", "trainLabels.csv": b"id,label\n1,a\n",
      "sampleSubmission.csv": b"id,label\n1,a\n"}, "trainLabels.csv: no image file is named by its 'id' column"),
])
def test_an_archive_with_a_file_where_a_folder_belongs_is_one_line(project, tmp_path, members, message):
    archive = tmp_path / "odd.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    result = runner.invoke(app, ["fetch", "--archive", str(archive)])
    assert result.exit_code == 1 and message in result.output and result.output.count("\n") == 1
    assert not (project / "dataset").exists()  # a failed first fetch leaves no empty dataset/


def test_checkpoints_lacking_entries_are_one_line(trained):
    run = trained / "weights" / "exp"
    checkpoint = load_checkpoint(run / "last.pt")
    save_checkpoint(run / "last.pt", {k: v for k, v in checkpoint.items() if k != "optimizer"})
    with pytest.raises(PipelineError, match=r"last.pt: lacks optimizer, so the run cannot continue from it"):
        resume(run, {"epochs": 5})
    config = {k: v for k, v in checkpoint["config"].items() if k not in ("mean", "std")}
    save_checkpoint(trained / "old.pt", {**checkpoint, "config": config})
    with pytest.raises(PipelineError, match="its config has no normalisation"):
        predict(checkpoints=[trained / "old.pt"], tta="none")


def test_stdout_full_or_closed_is_one_line_after_the_work(trained):
    full = run_cli("predict", "--tta", "none", cwd=trained, stdout=open("/dev/full", "w"), stderr=subprocess.PIPE)
    assert full.returncode == 1
    assert full.stderr.strip().splitlines() == [
        "error: stdout: No space left on device; the command's work is done, its output could not be written"]
    assert (trained / "submissions" / "submission.csv").is_file()
    closed = subprocess.run(f"{sys.executable} -c 'from pipeline.cli import main; main()' runs >&-", shell=True,
                            cwd=trained, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert closed.returncode == 1 and closed.stderr.startswith("error: stdout: stdout is closed")


def test_a_reader_that_goes_away_does_not_stop_training(fetched):
    command = (f"set -o pipefail; {sys.executable} -c 'from pipeline.cli import main; main()' train --epochs 3 "
               "--limit 120 --batch-size 32 --workers 0 --lr 0.02 --device cpu --name piped | head -1")
    done = subprocess.run(["bash", "-c", command], cwd=fetched, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True)  # pipefail: the status is pipeline's, not head's
    assert done.returncode == 0 and done.stderr == "", done.stderr
    run = Run(fetched / "weights" / "piped")
    assert run.read_status()["state"] == "finished"
    assert pd.read_csv(run.path / "metrics.csv")["epoch"].tolist() == [1, 2, 3]


# --- rough edges ----------------------------------------------------------------------------------------------

def test_bad_values_are_refused_before_torch_is_imported(project):
    probe = ("import sys; from pipeline.cli import main\n"
             "try:\n    main()\nexcept SystemExit as e:\n    print(e.code, 'torch' in sys.modules)")
    for args in (["train", "--lr", "nan"], ["predict", "--batch-size", "0"]):
        done = subprocess.run([sys.executable, "-c", probe, *args], cwd=project, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.stdout.strip() == "1 False" and done.stderr.startswith("error: --"), (args, done.stderr)


def test_help_shows_choices_and_no_python_types_and_version_and_h(project):
    for command in ("fetch", "train", "predict", "export", "ensemble", "submit", "summary", "report", "runs", "compare"):
        text = runner.invoke(app, [command, "-h"], env={"COLUMNS": "250"}).output
        assert not any(kind in text for kind in ("<list[", "<path>", "<str>", "<int>", "<float>")), command
        assert text.count("<bool>") == 1, command  # only -h/--help's own
    help_text = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "250"}).output
    assert "<none|flip|flip-shift|flip-translate>" in help_text and "<auto|torch|openvino>" in help_text
    assert runner.invoke(app, ["--version"]).output.startswith("pipeline ")


def test_same_named_checkpoints_keep_their_own_probabilities(trained):
    checkpoint = load_checkpoint(trained / "weights" / "exp" / "best.pt")
    for epoch, folder in enumerate(("a", "b")):  # two models (one file twice would be refused: it weighs double)
        (trained / folder).mkdir()
        torch.save({**checkpoint, "epoch": epoch + 1}, trained / folder / "model.pt")
    result = predict(checkpoints=[trained / "a" / "model.pt", trained / "b" / "model.pt"], tta="none")
    assert result.members == ["a-model.probs.npy", "b-model.probs.npy"]


def test_training_prints_its_result_once_and_fetch_no_staging_path(project, competition_zip):
    fetched = runner.invoke(app, ["fetch", "--archive", str(competition_zip)])
    assert fetched.exit_code == 0 and ".staging" not in fetched.output
    trained = runner.invoke(app, ["train", "--epochs", "1", "--workers", "0", "--batch-size", "32"])
    assert trained.exit_code == 0 and trained.output.count("best val accuracy") == 1


def test_submit_goes_to_the_competition_fetch_laid_out(kaggle, fetched):
    from pipeline.submit import submit
    frame = pd.read_csv(fetched / "dataset" / "sampleSubmission.csv", dtype=str).assign(label="kiwi")
    (fetched / "submissions").mkdir()
    frame.to_csv(fetched / "submissions" / "submission.csv", index=False)
    (fetched / "dataset" / ".complete.json").write_text(json.dumps({"source": "dogs-vs-cats"}))
    kaggle.competitions["dogs-vs-cats"] = b""
    assert submit("x").competition == "dogs-vs-cats"
    (fetched / "dataset" / ".complete.json").write_text(json.dumps({"source": "sample"}))
    with pytest.raises(PipelineError, match="holds the offline sample, not a Kaggle competition; name one with"):
        submit("x")


def test_progress_outside_a_terminal_is_a_plain_line_now_and_then():
    console = Console(record=True, width=200, force_terminal=False)
    advance = plain_progress(console, "epoch 1/3", 100, {"loss": 0.0}, every=0.0)
    advance(10, loss=2.5)
    advance(90, loss=1.25)  # the end: the epoch's own line follows, no progress line
    assert console.export_text().splitlines() == ["epoch 1/3: 10/100 (10%) loss 2.5000"]


# --- a second hostile pass (other inputs of the same classes) ----------------------------------------------------

def test_writes_never_replace_a_link_device_or_pipe(trained, tmp_path):
    from pipeline.workspace import write_text_atomic
    target = tmp_path / "real" / "link.csv"
    target.parent.mkdir()
    target.write_text("old")
    (tmp_path / "link.csv").symlink_to(target)
    write_text_atomic(tmp_path / "link.csv", "new")
    assert (tmp_path / "link.csv").is_symlink() and target.read_text() == "new"  # the link kept, its target written
    (tmp_path / "best.pt").write_text("weights")
    (tmp_path / "a.probs.npy").symlink_to(tmp_path / "best.pt")  # a file of another name: never written through
    with pytest.raises(PipelineError, match="a link to .*best.pt, a file of another name, which is never written"):
        write_text_atomic(tmp_path / "a.probs.npy", "x")
    assert (tmp_path / "best.pt").read_text() == "weights"
    os.mkfifo(tmp_path / "pipe")
    for special in (tmp_path / "pipe", Path("/dev/null"), tmp_path):
        with pytest.raises(PipelineError, match="not a regular file .* so it is not replaced"):
            write_text_atomic(special, "x")
    assert (tmp_path / "pipe").exists() and Path("/dev/null").is_char_device()


def test_a_limit_keeps_every_class_and_one_too_small_for_them_is_refused(fetched):
    """Pass 39: --limit took the first N ids, so a set laid out class by class (class folders) trained on its first
    classes only, and the classes left without an image passed (accuracy 0.50, exit 0)."""
    labels = pd.read_csv(fetched / "dataset" / "trainLabels.csv", dtype=str)
    labels.loc[labels["id"].astype(int) <= 60, "label"] = "kiwi"  # ids numbered class by class
    labels.to_csv(fetched / "dataset" / "trainLabels.csv", index=False)
    data = training_arrays(fetched / "dataset", limit=40)
    counts = np.bincount(data.targets, minlength=len(data.classes))
    assert len(data.ids) == 40 and counts.min() >= 1 and data.ids == sorted(data.ids, key=int)
    with pytest.raises(PipelineError, match=r"--limit 3 leaves class\(es\) '\w+' without an image \(4 classes\); "
                                            r"raise it, to 20 at least for a 0.2 val split"):
        train(TrainConfig(epochs=1, limit=3, full=True, **QUICK))


def test_resume_refuses_images_that_changed_under_the_same_ids(fetched):
    run = train(TrainConfig(epochs=1, limit=80, **QUICK)).run_dir
    train_dir = fetched / "dataset" / "train"
    first, second = train_dir / "1.png", train_dir / "2.png"
    first_bytes = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(first_bytes)  # two images swap ids, labels unchanged
    with pytest.raises(PipelineError, match="not those exp started on"):
        resume(run, {"epochs": 2})


def test_labels_with_invisible_or_full_width_characters_are_one_class(fetched):
    respell(fetched, "kiwi", ("kiwi\u200b", 2), ("ｋｉｗｉ", 2))
    assert load_train_set(fetched / "dataset").classes == ["apple", "kiwi", "mango", "zebra"]


def test_ensemble_and_score_check_before_writing(trained):
    predict(tta="none")
    submission = trained / "submissions" / "submission.csv"
    before = submission.read_bytes()
    with pytest.raises(PipelineError, match="nope.csv: no such solution file for --score"):
        predict(tta="none", score=Path("nope.csv"))
    (trained / "other.csv").write_text("id,label\n99999,kiwi\n")
    with pytest.raises(PipelineError, match="other.csv: 1 id.s. are not test ids of sampleSubmission.csv, e.g. 99999"):
        predict(tta="none", score=trained / "other.csv")
    labels = pd.read_csv(trained / "dataset" / "trainLabels.csv", dtype=str)
    labels.replace({"label": {"kiwi": "lime"}}).to_csv(trained / "dataset" / "trainLabels.csv", index=False)
    with pytest.raises(PipelineError, match="only the model has kiwi; only trainLabels.csv has lime"):
        ensemble([Path("exp")])
    sample = (trained / "dataset" / "sampleSubmission.csv").read_text()
    (trained / "dataset" / "sampleSubmission.csv").write_text(sample.rsplit("\n", 2)[0] + "\n")  # a refetch: other
    with pytest.raises(PipelineError, match="only the model has kiwi; only trainLabels.csv has lime"):  # ids too
        ensemble([Path("exp")])  # before, "made for other test ids", as if predicting again would do
    (trained / "dataset" / "sampleSubmission.csv").write_text(sample)
    labels.to_csv(trained / "dataset" / "trainLabels.csv", index=False)
    meta = trained / "submissions" / "exp.probs.json"
    meta.write_text('{"ids": ')
    with pytest.raises(PipelineError, match="exp.probs.json: not the metadata `pipeline predict` writes"):
        ensemble([Path("exp")])
    assert submission.read_bytes() == before


@pytest.mark.parametrize("options, message", [
    ({"lr": 1e308}, r"--lr 1e\+308: must be a finite number > 0 \(and below 3.4e38"),
    ({"weight_decay": 1e300}, "--weight-decay 1e"),
    ({"batch_size": 1}, "--batch-size must be 2 or more"),
    ({"device": "tpu"}, "--device 'tpu': expected auto, cpu, cuda or cuda:N"),
    ({"threads": 0}, "--threads must be 1 or more"),
    ({"name": "a\x01"}, "control characters"),
])
def test_more_values_that_make_no_sense(fetched, options, message):
    with pytest.raises(PipelineError, match=message):
        train(TrainConfig(epochs=1, **{**QUICK, **options}))


def test_too_few_images_for_one_batch_and_a_cache_that_is_a_file(fetched):
    from pipeline.runtime import Runtime
    from pipeline.train import TrainBatches
    with pytest.raises(PipelineError, match="1 training image.s. make no batch of 2 or more"):
        TrainBatches(TrainConfig(**QUICK), np.zeros((1, 8, 8, 3), np.uint8), np.zeros(1, np.int64), 10,
                     Runtime(torch.device("cpu")), (0.5,) * 3, (0.2,) * 3)
    shutil.rmtree(fetched / "dataset" / ".cache", ignore_errors=True)
    (fetched / "dataset" / ".cache").write_text("hi")
    with pytest.raises(PipelineError, match=r"\.cache: a file where the folder of decoded caches goes"):
        train(TrainConfig(epochs=1, **QUICK))


def test_hand_edited_checkpoints_are_one_line(trained):
    checkpoint = load_checkpoint(trained / "weights" / "exp" / "best.pt")
    edits = {
        "classes": ({"config": {**checkpoint["config"], "classes": list(range(4))}}, "classes must be names"),
        "image_size": ({"config": {**checkpoint["config"], "image_size": [32]}}, "image_size must be"),
        "mean": ({"config": {**checkpoint["config"], "mean": [0.5]}}, "mean and std must be"),
        "model": ({"model": torch.zeros(3)}, "not a state dict of tensors"),
    }
    for name, (edit, message) in edits.items():
        save_checkpoint(trained / f"{name}.pt", {**checkpoint, **edit})
        with pytest.raises(PipelineError, match=message):
            predict(checkpoints=[trained / f"{name}.pt"], tta="none")


def test_extraction_limits_from_the_environment_are_checked(project, competition_zip, monkeypatch):
    monkeypatch.setenv("PIPELINE_MAX_EXTRACT_GB", "abc")
    result = runner.invoke(app, ["fetch", "--archive", str(competition_zip)])
    assert result.exit_code == 1 and "PIPELINE_MAX_EXTRACT_GB='abc': expected a positive number" in result.output
    monkeypatch.setenv("PIPELINE_MAX_EXTRACT_GB", "1.5")
    assert runner.invoke(app, ["fetch", "--archive", str(competition_zip)]).exit_code == 0
    assert runner.invoke(app, ["fetch", "--sample", "--competition", "x"]).exit_code == 1


def test_a_run_name_means_the_run_and_a_running_run_is_not_resumed_twice(trained):
    shutil.copytree(trained / "weights" / "exp", trained / "exp")  # a folder of the same name beside weights/
    assert predict(runs=[Path("exp")], tta="none").members == ["exp.probs.npy"]
    from pipeline.run import resolve_run
    assert resolve_run(Path("exp")) == trained / "weights" / "exp"
    Run(trained / "weights" / "exp").set_status("running")  # this very process, alive
    with pytest.raises(PipelineError, match="still training .process"):
        resume(Path("exp"), {"epochs": 9})


def test_sixteen_bit_images_are_scaled_by_one_rule_and_float_images_keep_their_brightness(tmp_path):
    """8-bit values in a 16-bit PNG were once divided by 257 (black), then kept whenever no pixel exceeded 255 — so
    two 16-bit images one pixel apart read 257 times apart. 16 bits are now always scaled; one whose pixels reach
    only 1 … 255 is a listed problem (its file cannot tell which it is); an all-black one is black either way."""
    folder = tmp_path / "test"
    folder.mkdir()
    dark = np.full((8, 8), 200, np.uint16)
    Image.fromarray(dark).save(folder / "1.png")  # 8-bit values in a 16-bit PNG, or a near-black 16-bit image
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(folder / "2.tiff")  # float in [0, 1]
    (folder / "2.tiff").rename(folder / "2.png")  # a TIFF named .png opens all the same
    Image.fromarray(np.full((8, 8), 40, np.uint8)).save(folder / "3.png")
    dark[0, 0] = 256
    Image.fromarray(dark).save(folder / "4.png")  # one pixel above 255: 16 bits, scaled
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(folder / "5.png")
    decoded = decode_images(folder, ["1", "2", "3", "4", "5"], tmp_path / "test.npy")
    assert list(decoded.bad) == ["1"]
    assert "image whose pixels reach only 200 of 65535" in decoded.bad["1"]
    assert [int(decoded.images[k].max()) for k in range(1, 5)] == [128, 40, 1, 0]


def test_a_re_pointed_symlink_is_decoded_again(tmp_path):
    folder, pool = tmp_path / "test", tmp_path / "pool"
    folder.mkdir(), pool.mkdir()
    for _ in range(100):  # two targets whose stat is the same to the nanosecond (one clock tick): only the link tells
        for name, value in (("a", 10), ("b", 200)):
            same_size_png(pool / f"{name}.png", np.full((8, 8, 3), value, np.uint8))
        for name in ("a", "b"):
            os.utime(pool / f"{name}.png", ns=(1_600_000_000 * 10**9,) * 2)
        a, b = (pool / "a.png").stat(), (pool / "b.png").stat()
        if (a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (b.st_size, b.st_mtime_ns, b.st_ctime_ns):
            break
    else:
        pytest.skip("this file system's clock never gave two files the same change time")
    (folder / "1.png").symlink_to(pool / "a.png")
    assert decode_images(folder, ["1"], tmp_path / "test.npy").images[0].max() == 10
    (folder / "1.png").unlink()
    (folder / "1.png").symlink_to(pool / "b.png")
    assert decode_images(folder, ["1"], tmp_path / "test.npy").images[0].max() == 200


def test_images_that_are_symlink_loops_or_dangling_links_are_listed_not_lost(fetched):
    """A link in train/ that leads nowhere (a loop, a missing target) is a problem named like a broken image, not a
    traceback while the folder is listed, and not an image silently left out."""
    train_dir = fetched / "dataset" / "train"
    (train_dir / "3.png").unlink()
    (train_dir / "3.png").symlink_to("3-again.png")
    (train_dir / "3-again.png").symlink_to("3.png")  # a loop
    (train_dir / "4.png").unlink()
    (train_dir / "4.png").symlink_to("gone.png")  # dangling
    result = runner.invoke(app, ["train", "--epochs", "1", "--device", "cpu", "--batch-size", "32"])
    assert result.exit_code == 1 and result.output.count("error:") == 1 and "Traceback" not in result.output
    for problem in ("train/3.png: not a readable image ([Errno 40] Too many levels of symbolic links)",
                    "train/4.png: not a readable image ([Errno 2] No such file or directory)",
                    "train/3-again.png: not listed in trainLabels.csv"):
        assert problem in result.output
    skipped = runner.invoke(app, ["train", "--epochs", "1", "--device", "cpu", "--batch-size", "32", "--skip-bad"])
    assert skipped.exit_code == 0, skipped.output
    listed = (fetched / "weights" / "exp" / "skipped.txt").read_text()
    assert "train/3.png: not a readable image" in listed and "train/4.png: not a readable image" in listed


def test_empty_truncated_or_misshapen_files_of_a_cv_or_a_prediction_are_one_line(fetched):
    """Files a user can touch, read by CVs, runs, ensembles and blends: each wrong one is an error line naming it
    (or, in `pipeline runs`, a listed problem), never a Python error or a CV taken for what it is not."""
    cv = fetched / "weights" / "cv"
    fabricate_run(cv, "fold-0")
    for plan, shown in (('{"folds": 0}', "0"), ('[2, 3]', "None"), ('{"folds": "5"}', "'5'")):
        (cv / "cv.json").write_text(plan)
        result = runner.invoke(app, ["predict", "--run", "cv", "--device", "cpu"])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert f"cv.json: not the plan `pipeline train --folds K` writes (an object whose folds is from 2 to 100, got {shown})" \
            f"; restore it from a copy (the fold folders here: fold-0), use a fold alone (--run cv/fold-I)" \
            in " ".join(result.output.split())
        listed = runner.invoke(app, ["runs"])
        assert listed.exit_code == 0 and "cross-validation cv: " in listed.output and "cv.json: not the plan" in listed.output
    for plan, message in (('{"folds": 2, "seed": true}', "cv.json: seed must be a whole number, got True; restore "
                                                         "it from a copy (the fold folders here: fold-0)"),
                          ('{"folds": 5, "folds": 2}', "cv.json: unreadable (folds given twice; keep one)"),
                          (None, "cv.json: not a regular file (a folder, or a broken link); restore it from a copy")):
        (cv / "cv.json").unlink()
        (cv / "cv.json").write_text(plan) if plan else (cv / "cv.json").mkdir()
        result = runner.invoke(app, ["predict", "--run", "cv", "--device", "cpu"])
        assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output
    (cv / "cv.json").rmdir()
    (cv / "cv.json").write_text('{"folds": 2}')
    (cv / "oof.npz").write_bytes(b"")
    for summary in ("[]", '{"metric": "accuracy", "oof": 0.9}', '{"metric": ["accuracy"]}', "{"):
        (cv / "cv_summary.json").write_text(summary)  # copies for the user, never read back
        listed = runner.invoke(app, ["runs"])
        assert listed.exit_code == 0 and "Traceback" not in listed.output
        assert "cross-validation cv (2 folds): 1 of 2 folds finished; " in " ".join(listed.output.split())
    (cv / "fold-0" / "val_probabilities.npz").write_bytes(b"")
    with pytest.raises(PipelineError, match=r"val_probabilities.npz: unreadable \(.+\); delete .*fold-0 and train it again"):
        Run(cv / "fold-0").read_val_probabilities()
    submissions = fetched / "submissions"
    submissions.mkdir(exist_ok=True)
    (submissions / "x.probs.npy").write_bytes(b"")
    (submissions / "x.probs.json").write_text('{"classes": ["a", "b"]}')
    result = runner.invoke(app, ["ensemble", str(submissions / "x.probs.npy")])
    assert result.exit_code == 1 and "x.probs.npy: not a readable .npy file" in result.output, result.output


def test_a_csv_in_utf16_without_a_byte_order_mark_says_so(trained):
    sample = (trained / "dataset" / "sampleSubmission.csv").read_text()
    (trained / "utf16.csv").write_bytes(sample.encode("utf-16-le"))  # Excel's "Unicode text", less its BOM
    result = runner.invoke(app, ["predict", "--device", "cpu", "--score", "utf16.csv"])
    assert result.exit_code == 1 and "\x00" not in result.output, result.output
    assert "utf16.csv: holds NUL bytes, so it is not UTF-8 text (UTF-16 without a byte-order mark?); save it as a " \
           "UTF-8 CSV" in result.output


def test_a_checkpoint_that_cannot_be_written_leaves_a_record_that_matches_the_files(fetched, monkeypatch):
    """Disk full while epoch 2's checkpoint is written: the error names the checkpoint (not status.json, which the
    full disk refuses too), and metrics.csv, result.txt and `pipeline runs` stop at epoch 1, whose checkpoint exists."""
    import pipeline.run
    from pipeline.workspace import write_failure

    save = pipeline.run.save_checkpoint

    def full_at_epoch_two(path, checkpoint, copies=()):
        if checkpoint["epoch"] == 2:
            raise write_failure(path, OSError(28, "No space left on device"))
        save(path, checkpoint, copies)

    def status_refused(self, state, **details):
        if state == "failed":
            raise write_failure(self.path / "status.json", OSError(28, "No space left on device"))
        set_status(self, state, **details)

    set_status = Run.set_status
    monkeypatch.setattr(pipeline.run, "save_checkpoint", full_at_epoch_two)
    monkeypatch.setattr(Run, "set_status", status_refused)
    with pytest.raises(PipelineError, match=r"last.pt: cannot write it: no space left on the device; make room, then go on"):
        train(TrainConfig(epochs=3, limit=80, name="full", **QUICK))
    run = Run(fetched / "weights" / "full")
    assert run.read_metrics()["epoch"].tolist() == [1] and load_checkpoint(run.last)["epoch"] == 1
    assert "(of 1 trained" in (run.path / "result.txt").read_text()


def test_a_run_killed_between_its_checkpoint_and_its_metrics_log_resumes_with_every_epoch(fetched):
    run_dir = train(TrainConfig(epochs=2, limit=80, name="gap", **QUICK)).run_dir
    metrics = pd.read_csv(run_dir / "metrics.csv")
    metrics[metrics["epoch"] < 2].to_csv(run_dir / "metrics.csv", index=False)  # last.pt holds epoch 2, the log 1
    resume(run_dir, {"epochs": 3})
    assert pd.read_csv(run_dir / "metrics.csv")["epoch"].tolist() == [1, 2, 3]


def described(root: Path, **fields) -> None:
    """dataset/competition.json with `fields` over CIFAR-10's shape."""
    (root / "dataset" / "competition.json").write_text(json.dumps(fields))


def test_a_description_pointing_at_the_wrong_files_is_refused_before_anything_runs(trained):
    dataset = trained / "dataset"
    # the training folder named as the test images, where the sample's ids are labeled training images
    labeled = pd.read_csv(dataset / "trainLabels.csv")["id"].astype(str).head(5)
    pd.DataFrame({"id": labeled, "label": "x"}).to_csv(dataset / "sample2.csv", index=False)
    described(trained, test_images="train", sample_submission="sample2.csv")
    result = runner.invoke(app, ["predict", "--device", "cpu"])
    assert result.exit_code == 1 and "sample2.csv: 5 of its ids are labeled in trainLabels.csv too" in \
        result.output and "where competition.json names one folder for both sets by mistake, name each set's " \
        "folder there" in " ".join(result.output.split()), result.output
    # the two folders swapped, where the test ids (1 … 40) are also labeled ids (of 1 … 400): neither trains on the
    # test images with the training labels nor predicts the training images
    described(trained, train_images="test", test_images="train")
    result = runner.invoke(app, ["predict", "--device", "cpu"])
    assert result.exit_code == 1 and "competition.json: test_images names train/, which holds exactly the ids " \
        "trainLabels.csv labels (400 images): are train_images and test_images swapped?" in result.output, result.output
    result = runner.invoke(app, ["train", "--epochs", "1", "--device", "cpu", "--name", "new", "--skip-bad"])
    assert result.exit_code == 1 and "competition.json: train_images names test/, which holds exactly the test ids " \
        "of sampleSubmission.csv (40 images): are train_images" in result.output, result.output
    # a labels path that is a folder
    described(trained, labels_csv="train")
    result = runner.invoke(app, ["train", "--epochs", "1", "--device", "cpu", "--name", "new"])
    assert result.exit_code == 1 and "train: a folder, not a CSV file; name the file in dataset/competition.json" \
        in result.output, result.output
    # a probability per class, of classes the labels do not have: refused before training, not after
    classes = sorted(pd.read_csv(dataset / "trainLabels.csv")["label"].unique())
    sample = pd.read_csv(dataset / "sampleSubmission.csv")[["id"]]
    for name in ["other", *classes[1:]]:
        sample[name] = 0.25
    sample.to_csv(dataset / "sample3.csv", index=False)
    described(trained, sample_submission="sample3.csv", submission_columns=["other", *classes[1:]],
              submission_kind="probabilities", metric="log_loss")
    result = runner.invoke(app, ["train", "--epochs", "1", "--device", "cpu", "--name", "new"])
    assert result.exit_code == 1 and "the submission takes the probabilities of other, " in result.output
    assert "but the training labels' classes are" in result.output and not (trained / "weights" / "new").exists()


def test_second_hostile_pass_inputs(trained):
    """Inputs of the second hostile pass (issue 33) that were silently wrong or said the wrong thing."""
    dataset, weights = trained / "dataset", trained / "weights"
    # a row with one field more than the header: pandas shifted every column onto the next
    metrics = weights / "exp" / "metrics.csv"
    lines = metrics.read_text().splitlines()
    metrics.unlink()  # a hard link to the session's run: replaced, not written through
    metrics.write_text("\n".join([lines[0], lines[1] + ",99", *lines[2:]]) + "\n")
    listed = runner.invoke(app, ["runs"])
    assert listed.exit_code == 0 and "finished: metrics.csv: not a metrics CSV" in " ".join(listed.output.split())
    reported = runner.invoke(app, ["report", "exp"])
    assert reported.exit_code == 1 and "a row has more fields than the header; fix the file" in reported.output
    labels = (dataset / "trainLabels.csv").read_text().splitlines()
    (dataset / "shifted.csv").write_text("\n".join([labels[0], labels[1] + ",x", *labels[2:]]) + "\n")
    with pytest.raises(PipelineError, match=r"shifted.csv: a row has more fields than the header; fix the file"):
        described(trained, labels_csv="shifted.csv")
        load_train_set(dataset)
    # description fields naming the wrong files: each refused before training, naming what to fix
    for fields, message in (
            (dict(sample_submission="trainLabels.csv"), "sample_submission and labels_csv both name trainLabels.csv"),
            (dict(labels_csv="train/1.png"), "train/1.png: is a PNG image, not a CSV; save it as a UTF-8 CSV or name the "
                                             "right file"),
            (dict(train_images="nope"), "nope: folder not found; fix the folder .*competition.json names"),
            (dict(submission_id="label"), r"sampleSubmission.csv: 39 duplicate id\(s\) in its 'label' column: .*; is "
                                          r"that its id column\? \(dataset/competition.json names it\)")):
        described(trained, **fields)
        result = runner.invoke(app, ["train", "--epochs", "1", "--device", "cpu", "--name", "new"])
        assert result.exit_code == 1 and not (weights / "new").exists(), result.output
        assert re.search(message, " ".join(result.output.split())), result.output
    (dataset / "competition.json").unlink()
    (weights / "file").write_text("not a run")
    result = runner.invoke(app, ["train", "--epochs", "1", "--device", "cpu", "--name", "file"])
    assert result.exit_code == 1 and "file: a file where the run's folder goes; move it aside, or choose another " \
        "--name" in " ".join(result.output.split())
    (trained / "spaced.yaml").write_text('"lr ": 0.2\n')
    result = runner.invoke(app, ["train", "--config", "spaced.yaml", "--print-config"])
    assert result.exit_code == 1 and "unknown option(s) 'lr '" in result.output


def test_predicting_with_a_run_that_did_not_finish_says_so(trained):
    from tests.fixtures import dead_pid

    Run(trained / "weights" / "exp").set_status("running", pid=dead_pid())
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu", "--tta", "none"])
    assert result.exit_code == 0, result.output
    assert "the run is crashed; predicting with its best checkpoint so far" in " ".join(result.output.split())


def test_third_hostile_pass_inputs(trained):
    """A metrics.csv row with fewer fields than the header (pandas filled blanks in), `runs --csv` onto a run's
    config.json, `--config` of an empty device file, a sample submission of other columns with no description."""
    metrics = trained / "weights" / "exp" / "metrics.csv"
    saved = metrics.read_text()
    lines = saved.splitlines()
    metrics.unlink()  # a hard link to the session's run: replaced, not written through
    metrics.write_text("\n".join([lines[0], lines[1].rsplit(",", 1)[0], *lines[2:]]) + "\n")
    reported = runner.invoke(app, ["report", "exp"])
    assert reported.exit_code == 1 and "metrics.csv: not a metrics CSV (row 2 has fewer fields than the header; " \
        "fix the file)" in " ".join(reported.output.split())
    metrics.unlink()
    metrics.write_text(saved)
    config = trained / "weights" / "exp" / "config.json"
    before = config.read_text()
    result = runner.invoke(app, ["runs", "--csv", str(config)])
    assert result.exit_code == 1 and "--csv writes a runs table as a .csv file" in " ".join(result.output.split()) and config.read_text() == before
    printed = runner.invoke(app, ["train", "--config", "/dev/null", "--print-config"])
    assert printed.exit_code == 0, printed.output
    sample = trained / "dataset" / "sampleSubmission.csv"
    sample.write_text("\n".join(line + "," for line in sample.read_text().splitlines()) + "\n")
    result = runner.invoke(app, ["predict", "--device", "cpu"])
    assert result.exit_code == 1 and "(an unnamed column: a comma at the end of each row?)" in " ".join(result.output.split())
    assert "with no competition.json in" in " ".join(result.output.split())


def test_fifth_hostile_pass_inputs(trained):
    """Copies for the user read back as truth (an edited metrics.csv, a replaced decoded cache), one model twice in an
    ensemble, keys given twice in competition.json, the test labels named as the training labels with --skip-bad,
    a checkpoint re-saved without its val digest, and the messages the pass found lacking."""
    weights, dataset = trained / "weights", trained / "dataset"
    metrics = weights / "exp" / "metrics.csv"
    saved = pd.read_csv(metrics)
    metrics.unlink()  # a hard link to the session's run: replaced, not written through
    saved.assign(val_acc=0.99, val_score=0.99).to_csv(metrics, index=False)
    listed = " ".join(runner.invoke(app, ["runs"]).output.split())
    assert "metrics.csv names epoch 1, but best.pt holds epoch" in listed and " 0.99 " not in listed
    # a decoded test cache replaced by other pixels of its shape is decoded again, never predicted
    assert runner.invoke(app, ["predict", "--device", "cpu", "--tta", "none"]).exit_code == 0
    before = np.load(trained / "submissions" / "exp.probs.npy")
    cache = dataset / ".cache"
    np.save(cache / "test.npy", np.load(cache / "train.npy")[:len(before)])
    assert runner.invoke(app, ["predict", "--device", "cpu", "--tta", "none"]).exit_code == 0
    assert np.array_equal(np.load(trained / "submissions" / "exp.probs.npy"), before)
    # one model twice in an ensemble: by name, or as a copied file
    for suffix in (".probs.npy", ".probs.json"):
        shutil.copyfile(trained / "submissions" / f"exp{suffix}", trained / "submissions" / f"copy{suffix}")
    for members, message in ((["exp", "exp"], "exp.probs.npy: named twice"),
                             (["exp", "copy"], "copy.probs.npy: predicted by the same model as")):
        result = runner.invoke(app, ["ensemble", *members])
        assert result.exit_code == 1 and message in result.output and "name each model once" in result.output
    # keys given twice in the description
    (dataset / "competition.json").write_text('{"metric": "f1_macro", "metric": "accuracy"}')
    result = runner.invoke(app, ["train", "--epochs", "1", "--device", "cpu", "--name", "new"])
    assert result.exit_code == 1 and "competition.json: not readable JSON (metric given twice; keep one)" in result.output
    # the test set's labels named as the training labels: --skip-bad does not make most of the data go away
    shutil.copy(dataset / "solution.csv", dataset / "test_labels.csv")
    (dataset / "competition.json").write_text('{"labels_csv": "test_labels.csv"}')
    result = runner.invoke(app, ["train", "--epochs", "1", "--device", "cpu", "--skip-bad", "--name", "new"])
    out = " ".join(result.output.split())
    assert result.exit_code == 1 and "That is more problems than usable labeled images (40): --skip-bad leaves out " \
        "a few bad files, not most of the data. Does" in out and "name the training labels (test_labels.csv)" in out
    (dataset / "competition.json").write_text('{"labels_csv": "solution.csv"}')
    result = runner.invoke(app, ["train", "--epochs", "1", "--device", "cpu", "--skip-bad", "--name", "new"])
    assert result.exit_code == 1 and "labels_csv names solution.csv, the held-out labels" in \
        " ".join(result.output.split())
    (dataset / "competition.json").unlink()
    # a validated checkpoint re-saved without the digest of its val predictions
    best = weights / "exp" / "best.pt"
    checkpoint = torch.load(best, weights_only=False)
    del checkpoint["val_digest"]
    best.unlink()
    torch.save(checkpoint, best)
    with pytest.raises(PipelineError, match=r"best.pt: lacks the digest of its val predictions that every checkpoint of "
                                            r"pipeline 0.3.0 or later holds \(re-saved by hand\?\)"):
        Run(weights / "exp").read_val_probabilities()
    best.unlink()
    best.write_bytes(b"")
    result = runner.invoke(app, ["predict", "--device", "cpu"])
    assert "best.pt: not a readable PyTorch file (an empty file); restore it from a copy, or make it again" \
        in " ".join(result.output.split())
    (weights / "exp" / "last.pt").unlink()
    result = runner.invoke(app, ["train", "--resume", "weights/exp", "--epochs", "9", "--device", "cpu"])
    assert result.exit_code == 1 and "last.pt: not found, so the run cannot continue from it; restore it" in \
        " ".join(result.output.split())


def test_csvs_in_other_encodings_say_which(project):
    (project / "bom.csv").write_bytes("id,label\n1,cat\n".encode("utf-16"))
    with pytest.raises(PipelineError, match=r"bom.csv: is UTF-16 text \(it starts with a byte-order mark\), not UTF-8; "
                                            r"save it as a UTF-8 CSV"):
        read_csv_text(project / "bom.csv")
    (project / "latin.csv").write_bytes("id,label\n1,café\n".encode("latin-1"))
    with pytest.raises(PipelineError, match=r"latin.csv: not UTF-8 text \(line 2 holds the byte b'\\xe9': saved in another "
                                            r"encoding, such as Latin-1 or Windows-1252\?\); save it as a UTF-8 CSV"):
        read_csv_text(project / "latin.csv")


def test_a_constant_channel_is_centred_not_divided_by_zero():
    images = np.zeros((4, 8, 8, 3), np.uint8)
    images[..., 0] = np.arange(4)[:, None, None] * 60  # red varies; green is 0 and blue 255 throughout
    images[..., 2] = 255
    mean, std = channel_stats(images)
    assert std[1] == std[2] == 1.0 and mean[2] == 1.0 and 0 < std[0] < 1


def sixteen_bit_rgb_png(pixels: np.ndarray) -> bytes:
    """A PNG of 16 bits per channel (colour type 2) holding `pixels` (H, W, 3), which Pillow cannot write."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = pixels.shape[:2]
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def replaced(path: Path, text: str) -> None:
    """Write `text` to a new file at `path` (the session run's files are hard links: never written through)."""
    path.unlink()
    path.write_text(text)


def test_sixth_hostile_pass_inputs(trained):
    """Forged copies of a run's own records (a saved prediction's array, metrics.csv rows, config.json, status.json),
    a 16-bit colour PNG, a report redrawn on changed labels, --pretrained weights that saw the val images, a folder
    left by a process killed while setting it up, and a CSV separated by semicolons."""
    from tests.fixtures import dead_pid

    weights, dataset, submissions = trained / "weights", trained / "dataset", trained / "submissions"
    run = weights / "exp"
    assert runner.invoke(app, ["predict", "--device", "cpu", "--tta", "none"]).exit_code == 0
    np.save(submissions / "exp.probs.npy", np.load(submissions / "exp.probs.npy")[::-1])  # another model's rows
    result = runner.invoke(app, ["ensemble", "exp"])
    assert result.exit_code == 1 and "exp.probs.npy: not the array exp.probs.json describes" in result.output
    metrics = run / "metrics.csv"
    logged = metrics.read_text()
    rows = pd.read_csv(metrics)
    replaced(metrics, rows.assign(val_f1=0.99).to_csv(index=False))
    assert "metrics.csv's epoch" in runner.invoke(app, ["runs"]).output
    replaced(metrics, pd.concat([rows, rows.tail(1).assign(epoch=rows["epoch"].max() + 1)]).to_csv(index=False))
    listed = " ".join(runner.invoke(app, ["runs"]).output.split())
    assert f"metrics.csv names epoch {rows['epoch'].max() + 1}, but last.pt holds epoch" in listed
    replaced(metrics, logged)
    config = run / "config.json"
    saved = config.read_text()
    replaced(config, saved.replace('"lr": 0.02', '"lr": 0.5'))
    assert "says --lr 0.5, but last.pt was trained with 0.02 (config.json edited by hand, or last.pt another run" in \
        " ".join(runner.invoke(app, ["runs"]).output.split())
    result = runner.invoke(app, ["train", "--config", "weights/exp", "--name", "again"])
    assert result.exit_code == 1 and "says --lr 0.5" in result.output
    replaced(config, saved)
    status = run / "status.json"
    replaced(status, json.dumps({"state": "finished"}))
    assert Run(run).read_status()["state"] == "failed"
    # a 16-bit colour PNG reads as its high bytes in Pillow: refused, not predicted as black
    pixels = np.asarray(Image.open(dataset / "test" / "3.png").convert("RGB"), np.uint16)
    (dataset / "test" / "3.png").write_bytes(sixteen_bit_rgb_png(pixels))
    result = runner.invoke(app, ["predict", "--device", "cpu"])
    assert result.exit_code == 1 and "3.png: is a 16-bit colour (or grey + alpha) PNG, which Pillow reads as its high bytes only" in \
        " ".join(result.output.split())
    (dataset / "test" / "3.png").unlink()
    Image.fromarray(pixels.astype(np.uint8)).save(dataset / "test" / "3.png")
    # a report redrawn after the labels changed would be of other images
    labels = pd.read_csv(dataset / "trainLabels.csv")
    labels.loc[:9, "label"] = labels.loc[:9, "label"].iloc[::-1].to_numpy()
    labels.to_csv(dataset / "trainLabels.csv", index=False)
    result = runner.invoke(app, ["report", "exp", "--device", "cpu"])
    assert result.exit_code == 1 and "its labeled images are not those" in " ".join(result.output.split())
    labels.loc[:9, "label"] = labels.loc[:9, "label"].iloc[::-1].to_numpy()
    labels.to_csv(dataset / "trainLabels.csv", index=False)
    # weights that trained on this run's val images are said to flatter its val score
    result = runner.invoke(app, ["train", "--epochs", "1", "--batch-size", "32", "--workers", "0", "--device", "cpu",
                                 "--recipe", "seed", "--seed", "7", "--pretrained", "weights/exp/best.pt",
                                 "--name", "warm"])
    assert result.exit_code == 0 and "trained on" in result.output and "so this run's val scores may flatter it" in \
        " ".join(result.output.split()), result.output
    # a folder left by a process killed while setting it up is taken again
    (weights / "killed").mkdir()
    Run(weights / "killed").set_status("running", pid=dead_pid())
    result = runner.invoke(app, ["train", "--epochs", "1", "--batch-size", "32", "--workers", "0", "--device", "cpu",
                                 "--recipe", "seed", "--name", "killed"])
    assert result.exit_code == 0, result.output
    for text in ("id;label\n1;cat\n", 'id;label\n1;cat\n2;"cat, black"\n', "id;label\n1;cat\n2;cat,black\n"):
        (dataset / "trainLabels.csv").write_text(text)  # a value's comma splits the row: said the same way
        result = runner.invoke(app, ["train", "--epochs", "1", "--device", "cpu", "--name", "semi"])
        assert result.exit_code == 1 and "its fields are separated by semicolons: save it with commas" in \
            " ".join(result.output.split()), result.output


def test_seventh_hostile_pass_inputs(trained):
    """Another run's files in a run's place (its prediction, its best.pt), another epoch's checkpoint as best.pt, an
    edited metrics row in a report, and a model named twice to compare or to teach."""
    weights, submissions = trained / "weights", trained / "submissions"
    quick = ["--epochs", "1", "--batch-size", "32", "--workers", "0", "--device", "cpu", "--recipe", "seed"]
    assert runner.invoke(app, ["train", *quick, "--lr", "0.05", "--name", "t"]).exit_code == 0
    for run in ("exp", "t"):
        assert runner.invoke(app, ["predict", "--run", run, "--device", "cpu", "--tta", "none"]).exit_code == 0
    kept = {suffix: (submissions / f"exp{suffix}").read_bytes() for suffix in (".probs.npy", ".probs.json")}
    for suffix in kept:
        shutil.copyfile(submissions / f"t{suffix}", submissions / f"exp{suffix}")
    result = runner.invoke(app, ["ensemble", "exp", "t"])
    assert result.exit_code == 1 and "exp.probs.npy: predicted by" in result.output and \
        "predict with it again (`pipeline predict --run exp`)" in " ".join(result.output.split())
    best = weights / "exp" / "best.pt"
    original = best.read_bytes()
    best.unlink()  # replaced, not written through the hard link
    shutil.copyfile(weights / "t" / "best.pt", best)
    for command in (["predict", "--run", "exp", "--device", "cpu"], ["export", "exp"], ["report", "exp"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1 and ("best.pt replaced?" in result.output or "copied over it?" in result.output), \
            (command, result.output)
    swapped = load_checkpoint(weights / "t" / "best.pt")
    swapped["epoch"] = load_checkpoint(weights / "exp" / "last.pt")["best_epoch"]  # its epoch no longer tells
    best.unlink()
    torch.save(swapped, best)
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu"])
    assert result.exit_code == 1 and "best.pt: it was trained with --lr 0.05, but this run with 0.02: another run's " \
        "checkpoint copied over it?" in " ".join(result.output.split()), result.output
    earlier = load_checkpoint(weights / "exp" / "last.pt")
    earlier["epoch"] = earlier["best_epoch"] - 1  # an earlier epoch's checkpoint (top/epoch-N.pt) as best.pt
    best.unlink()
    torch.save(earlier, best)
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu"])
    assert result.exit_code == 1 and "but the run's best epoch is" in result.output
    best.unlink()
    best.write_bytes(original)
    metrics = weights / "exp" / "metrics.csv"
    rows = pd.read_csv(metrics)
    replaced(metrics, rows.assign(val_f1=0.93).to_csv(index=False))
    result = runner.invoke(app, ["report", "exp", "--device", "cpu"])
    assert result.exit_code == 1 and "metrics.csv's epoch" in result.output
    for command, message in ((["compare", "exp", "exp"], "named twice"),
                             (["train", *quick, "--full", "--teacher", "exp,exp", "--name", "s"], "names a model twice")):
        result = runner.invoke(app, command)
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output


def test_seventh_hostile_pass_leftovers(trained):
    """A metrics row between the first and the best edited or left out, config.json's classes reordered, and a test cache
    rewritten with its metadata stamped to match."""
    weights, run = trained / "weights", Run(trained / "weights" / "exp")
    best_epoch = load_checkpoint(run.last)["best_epoch"]
    middle = next(epoch for epoch in (1, 2) if epoch != best_epoch)
    metrics = weights / "exp" / "metrics.csv"
    original = metrics.read_text()
    rows = pd.read_csv(metrics)
    rows.loc[rows["epoch"] == middle, "train_loss"] = 0.001
    replaced(metrics, rows.to_csv(index=False))
    result = runner.invoke(app, ["report", "exp", "--device", "cpu"])
    assert result.exit_code == 1 and f"metrics.csv's epoch {middle} says train_loss 0.001, but last.pt recorded" in \
        " ".join(result.output.split()), result.output
    replaced(metrics, rows[rows["epoch"] != middle].to_csv(index=False))  # a row left out
    result = runner.invoke(app, ["report", "exp", "--device", "cpu"])
    assert result.exit_code == 1 and "metrics.csv logs epochs" in " ".join(result.output.split()), result.output
    replaced(metrics, original)
    config = json.loads((weights / "exp" / "config.json").read_text())
    config["classes"] = config["classes"][::-1]
    replaced(weights / "exp" / "config.json", json.dumps(config))
    result = runner.invoke(app, ["report", "exp", "--device", "cpu"])
    assert result.exit_code == 1 and "config.json: its classes differ from those last.pt was trained with" in \
        " ".join(result.output.split()), result.output
    config["classes"] = config["classes"][::-1]
    replaced(weights / "exp" / "config.json", json.dumps(config))
    predicted = ["predict", "--run", "exp", "--device", "cpu", "--tta", "none"]
    assert runner.invoke(app, predicted).exit_code == 0
    submission = (trained / "submissions" / "submission.csv").read_text()
    cache, meta_file = trained / "dataset" / ".cache" / "test.npy", trained / "dataset" / ".cache" / "test.json"
    forged = np.load(cache)[::-1].copy()  # the images, in another order
    cache.unlink()
    np.save(cache, forged)
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "seal": metadata_seal(meta["key"], meta["bad"], meta["converted"], cache)}))
    result = runner.invoke(app, predicted)
    assert result.exit_code == 0 and "test.npy: not the images of test/" in " ".join(result.output.split())
    assert (trained / "submissions" / "submission.csv").read_text() == submission


def test_eighth_hostile_pass_inputs(trained):
    """A running status whose process number a restart gave to another process, a submission record that cannot be
    written, --pretrained naming a folder or a config, a described image suffix the files do not have, a label kind
    the labels do not fit, and an emptied metrics log."""
    weights, submissions, dataset = trained / "weights", trained / "submissions", trained / "dataset"
    shutil.copytree(weights / "exp", weights / "e1")
    Run(weights / "e1").set_status("running", pid=1, updated="2000-01-01T00:00:00+00:00")  # pid 1 started since
    assert Run(weights / "e1").training_pid() is None
    assert "crashed" in runner.invoke(app, ["runs"]).output
    (submissions / "submission.json").unlink(missing_ok=True)
    (submissions / "submission.json").mkdir(parents=True)
    (submissions / "submission.csv").write_text("kept\n")
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu", "--tta", "none"])
    assert result.exit_code == 1 and "submission.json: not a regular file" in " ".join(result.output.split())
    assert (submissions / "submission.csv").read_text() == "kept\n"
    quick = ["train", "--epochs", "1", "--batch-size", "32", "--workers", "0", "--device", "cpu", "--name", "pp"]
    for given, message in (("weights/exp", "a folder, not a weights file; name the file, e.g. weights/exp/best.pt"),
                           ("weights/exp/config.json", "not a weights file (a .json file)")):
        result = runner.invoke(app, [*quick, "--pretrained", given])
        assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output
    (dataset / "competition.json").write_text('{"image_suffix": ".PNG"}')
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu"])
    assert result.exit_code == 1 and "the folder holds them as .png files: fix image_suffix ('.PNG')" in \
        " ".join(result.output.split()), result.output
    (dataset / "competition.json").write_text('{"label_kind": "binary"}')
    result = runner.invoke(app, [*quick])
    assert result.exit_code == 1 and "label_kind 'binary', but trainLabels.csv has labels like" in \
        " ".join(result.output.split()), result.output
    (dataset / "competition.json").unlink()
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu", "--score", "dataset/sampleSubmission.csv"])
    assert result.exit_code == 1 and "the sample submission, whose labels are placeholders" in result.output
    replaced(weights / "e1" / "metrics.csv", "")
    result = runner.invoke(app, ["report", "e1", "--device", "cpu"])
    assert result.exit_code == 1 and "restore it from a copy" in result.output


def test_ninth_hostile_pass_leftovers(trained):
    """A description naming the held-out labels as the sample submission, a labels file cut mid-row, --pretrained
    weights of another model or of no weights at all, an unchanged value on resume, a sample row of more fields, and
    the cache's list of unusable images edited by hand."""
    weights, dataset = trained / "weights", trained / "dataset"
    predicted = ["predict", "--run", "exp", "--device", "cpu", "--tta", "none"]
    (dataset / "competition.json").write_text('{"sample_submission": "solution.csv"}')
    result = runner.invoke(app, predicted)
    assert result.exit_code == 1 and "sample_submission names solution.csv, the held-out labels" in \
        " ".join(result.output.split()), result.output
    (dataset / "competition.json").unlink()
    sample = dataset / "sampleSubmission.csv"
    original = sample.read_text()
    replaced(sample, "\n".join(original.splitlines()[:-5]) + "\n")  # 5 test images the sample does not list
    result = runner.invoke(app, predicted)
    assert result.exit_code == 0 and "test/ holds 5 image(s) sampleSubmission.csv does not list" in \
        " ".join(result.output.split()), result.output
    replaced(sample, original.replace("\n2,", "\n2,x,", 1))
    result = runner.invoke(app, predicted)
    assert result.exit_code == 1 and "line 3 has 3 fields where the header has 2" in result.output, result.output
    replaced(sample, original)
    labels = dataset / "trainLabels.csv"
    rows = labels.read_text().splitlines()
    last_id, last_label = rows[-1].split(",")
    replaced(labels, "\n".join(rows[:-1] + [f"{last_id},{last_label[:1]}"]))  # cut mid-row: no newline at the end
    quick = ["train", "--epochs", "1", "--batch-size", "32", "--workers", "0", "--device", "cpu", "--name", "n9"]
    for options in ([], ["--full"]):
        result = runner.invoke(app, [*quick, *options])
        assert result.exit_code == 1 and f"the last row ({last_id},{last_label[:1]}) looks cut off" in \
            " ".join(result.output.split()), result.output
    replaced(labels, "\n".join(rows) + "\n")
    assert runner.invoke(app, [*quick[:-1], "fast", "--model", "fastnet"]).exit_code == 0
    result = runner.invoke(app, [*quick, "--pretrained", "weights/fast/best.pt"])
    assert result.exit_code == 1 and "they are a fastnet run's weights (recipe fastnet)" in \
        " ".join(result.output.split()) and "--recipe fastnet" in result.output, result.output
    torch.save(torch.zeros(3), trained / "tensor.pth")
    for given, message in (("/dev/null", "not a regular file"), ("tensor.pth", "holds no state dict of tensors (a "
                                                                              "Tensor); name a model's weights")):
        result = runner.invoke(app, [*quick, "--pretrained", given])
        assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output
    batch = str(load_checkpoint(weights / "exp" / "last.pt")["config"]["options"]["batch_size"])
    result = runner.invoke(app, ["train", "--resume", "exp", "--batch-size", batch])
    assert result.exit_code == 1 and "finished its" in result.output and "cannot change" not in result.output
    result = runner.invoke(app, ["train", "--resume", "exp", "--batch-size", "16"])
    assert result.exit_code == 1 and f"--batch-size cannot change when resuming exp (it trains with --batch-size " \
        f"{batch})" in " ".join(result.output.split()), result.output
    meta_file = dataset / ".cache" / "train.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "bad": {"1": "not a readable image (edited)"}}))
    result = runner.invoke(app, quick)
    assert result.exit_code == 0 and "train.json: edited or replaced since it was written; decoding the images " \
        "again" in " ".join(result.output.split()), result.output
    assert json.loads(meta_file.read_text())["bad"] == {}


def test_tenth_hostile_pass_inputs(trained):
    """A solution whose labels are none of the classes, blank, or in other case; a cache's metadata, the submissions
    folder or a run's metrics.csv that is not a file; an unreadable status.json; a field name with an invisible
    character; --val-fraction with --folds."""
    dataset, weights = trained / "dataset", trained / "weights"
    solution = pd.read_csv(dataset / "solution.csv", dtype=str)
    scored = ["predict", "--run", "exp", "--device", "cpu", "--tta", "none", "--score"]
    result = runner.invoke(app, [*scored, "dataset/solution.csv"])
    assert result.exit_code == 0, result.output
    score = result.output.split("on the scored ids: ")[1].split()[0]
    solution.assign(label=solution["label"].str.upper() + " ").to_csv(trained / "upper.csv", index=False)
    result = runner.invoke(app, [*scored, "upper.csv"])
    assert result.exit_code == 0 and f"on the scored ids: {score}" in result.output, result.output
    for labels, message in (("kitten", "upper.csv: its label column holds 'kitten', not among the classes"),
                            ("", "upper.csv: 40 row(s) have no label (e.g. id 1)")):
        solution.assign(label=labels).to_csv(trained / "upper.csv", index=False)
        result = runner.invoke(app, [*scored, "upper.csv"])
        assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output
    meta_file = dataset / ".cache" / "test.json"
    meta_file.unlink()
    meta_file.mkdir()
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu", "--tta", "none"])
    assert result.exit_code == 1 and "test.json: not a regular file" in " ".join(result.output.split()), result.output
    meta_file.rmdir()
    shutil.rmtree(trained / "submissions")
    (trained / "submissions").write_text("")
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu", "--tta", "none"])
    assert result.exit_code == 1 and "submissions is a file where a folder belongs; move it aside" in \
        " ".join(result.output.split()), result.output
    (trained / "submissions").unlink()
    shutil.copytree(weights / "exp", weights / "m")
    (weights / "m" / "metrics.csv").unlink()
    (weights / "m" / "metrics.csv").mkdir()
    result = runner.invoke(app, ["report", "m", "--device", "cpu"])
    assert result.exit_code == 1 and "metrics.csv: not a regular file, so no metrics can be read" in \
        " ".join(result.output.split()), result.output
    assert "not a regular file" in " ".join(runner.invoke(app, ["runs"]).output.split())
    replaced(weights / "exp" / "status.json", "[]")
    listed = [line for line in runner.invoke(app, ["runs"]).output.splitlines() if " exp " in f" {line} "]
    assert listed and "unknown" in listed[0] and "finished" not in listed[0], listed
    (dataset / "competition.json").write_text('{"metric\\u200b": "accuracy"}')
    result = runner.invoke(app, ["train", "--epochs", "1", "--device", "cpu"])
    assert result.exit_code == 1 and "unknown field(s) 'metric\\u200b'" in result.output, result.output
    (dataset / "competition.json").unlink()
    result = runner.invoke(app, ["train", "--folds", "2", "--val-fraction", "0.5", "--epochs", "1", "--device", "cpu"])
    assert result.exit_code == 1 and "--val-fraction 0.5 does not apply to --folds 2" in result.output, result.output


def test_eleventh_hostile_pass_inputs(trained, tmp_path):
    """The probability of class 1 where the classes are 1 and 2; a sample of fractions over such classes; a solution
    of other marks; pixel CSVs with a bad cell or an id column, named as the archive holds them; a zip whose files sit
    under one folder; test images of another size; export of a model of other classes."""
    from pipeline.competition import infer_competition
    from pipeline.convert import convert_pixel_dataset
    from pipeline.submission import check_solution

    pair = tmp_path / "pair"
    write_competition(pair, n_train=40, n_test=8, classes=("1", "2"))
    sample = pd.read_csv(pair / "sampleSubmission.csv", dtype=str).assign(label="0.5")
    sample.to_csv(pair / "sampleSubmission.csv", index=False)
    with pytest.raises(PipelineError, match="its label column holds fractions, a probability of 1, but the training "
                                            "labels are 1, 2, not 0 and 1"):
        infer_competition(pair)  # before pass 31, a note, and labels submitted
    (pair / "competition.json").write_text('{"submission_kind": "probability", "metric": "roc_auc"}')
    with pytest.raises(PipelineError, match="which class is the positive one cannot be told"):
        load_train_set(pair)
    binary = tmp_path / "binary"
    write_competition(binary, n_train=40, n_test=8, classes=("0", "1"))
    (binary / "competition.json").write_text('{"submission_kind": "probability", "metric": "roc_auc"}')
    with pytest.raises(PipelineError, match="must hold 0 or 1, as submission_kind 'probability' of competition.json"):
        check_solution(pair / "solution.csv", binary, "roc_auc")
    raw, pixels = tmp_path / "staged" / ".raw", [f"pixel{i}" for i in range(16)]
    raw.mkdir(parents=True)
    rows = pd.DataFrame(np.zeros((3, 16), dtype=int), columns=pixels).assign(label=1)[["label", *pixels]]
    rows.to_csv(raw / "test.csv", index=False)
    bright = rows.copy()
    bright.loc[1, "pixel3"] = 300
    for frame, message in ((bright, "staged/train.csv: line 3, column pixel3 holds 300 (1 such cell(s)); pixel values"),
                           (rows.assign(id=7), "staged/train.csv: the column(s) 'id' are neither 'label' nor pixels")):
        frame.to_csv(raw / "train.csv", index=False)
        with pytest.raises(PipelineError, match=re.escape(message)):
            convert_pixel_dataset(raw, tmp_path / "out", "someone/digits")
    archive = trained / "folder.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted((trained / "dataset").rglob("*")):
            relative = path.relative_to(trained / "dataset")
            if path.is_file() and not relative.parts[0].startswith("."):
                z.write(path, f"my-competition/{relative}")
    result = runner.invoke(app, ["fetch", "--archive", str(archive), "--force"])
    assert result.exit_code == 0, result.output
    original = (trained / "dataset" / "test" / "3.png").read_bytes()
    Image.new("RGB", (1, 1)).save(trained / "dataset" / "test" / "3.png")
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu", "--tta", "none"])
    assert result.exit_code == 1 and "test/3.png: is 1×1, not 32×32 like the set" in result.output and \
        "image_size in competition.json (or `pipeline fetch --img-size S`, naming the --competition, --dataset or " \
        "--sample fetched)" in \
        " ".join(result.output.split()), result.output
    (trained / "dataset" / "test" / "3.png").write_bytes(original)
    labels = trained / "dataset" / "trainLabels.csv"
    labels.write_text(labels.read_text().replace("zebra", "horse"))
    result = runner.invoke(app, ["export", "exp"])
    assert result.exit_code == 1 and "predict with a model trained on this dataset" in \
        " ".join(result.output.split()), result.output


def test_twelfth_hostile_pass_inputs(trained, tmp_path):
    """compare --output and runs --csv onto files of runs, of dataset/ or of other kinds; image_size changed after
    training; integer labels written with a leading zero; --pretrained fastnet weights of colour images into a
    greyscale set."""
    weights, dataset = trained / "weights", trained / "dataset"
    shutil.copytree(weights / "exp", weights / "e2")
    config, sample = (weights / "exp" / "config.json").read_bytes(), (dataset / "sampleSubmission.csv").read_bytes()
    for command, message in ((["compare", "exp", "e2", "--output", "weights/exp/config.json"], "--output writes a "
                              "figure as a .png file"), (["compare", "exp", "e2", "--output", "out.txt"], "name a path "
                              "ending in .png"), (["compare", "exp", "e2", "--output", "weights/exp/confusion.png"],
                                                  "exists and is a file of"),
                             (["runs", "--csv", "dataset/sampleSubmission.csv"], "exists and is a file of"),
                             (["runs", "--csv", "weights/exp/metrics.csv"], "which --csv never replaces")):
        result = runner.invoke(app, command)
        assert result.exit_code == 1 and message in " ".join(result.output.split()), (command, result.output)
    assert (weights / "exp" / "config.json").read_bytes() == config
    assert (dataset / "sampleSubmission.csv").read_bytes() == sample
    (trained / "elsewhere.csv").write_text("id,label\n1,a\n")
    result = runner.invoke(app, ["runs", "--csv", "elsewhere.csv"])
    assert result.exit_code == 1 and "exists and is not a runs table written before" in " ".join(result.output.split())
    for _ in range(2):  # an earlier table is replaced
        assert runner.invoke(app, ["runs", "--csv", "table.csv"]).exit_code == 0
    (dataset / "competition.json").write_text('{"image_size": 24}')
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu", "--tta", "none"])
    assert result.exit_code == 1 and "image_size 24 in" in result.output and "set image_size as it was (32" in \
        " ".join(result.output.split()), result.output
    (dataset / "competition.json").unlink()
    digits = tmp_path / "digits"
    write_competition(digits, n_train=40, n_test=8, classes=("0", "1", "2"))
    labels = digits / "trainLabels.csv"
    labels.write_text(re.sub(r",1\n", ",01\n", labels.read_text(), count=1))
    (digits / "competition.json").write_text('{"label_kind": "integers"}')
    loaded = load_train_set(digits)
    assert loaded.classes == ["0", "1", "2"] and "'01' read as '1' (1 row)" in loaded.notes
    labels.write_text(re.sub(r",1\n", ",01\n", labels.read_text(), count=6))  # pass 36: '01' beside '1', each a class
    loaded = load_train_set(digits)
    assert loaded.classes == ["0", "01", "1", "2"] and "'01' and '1' kept as classes of their own" in loaded.notes[-1]
    labels.write_text(re.sub(r",01\n", ",1\n", re.sub(r",2\n", ",2.0\n", labels.read_text(), count=6)))
    loaded = load_train_set(digits)  # pass 38: 2.0 beside 2 (a pandas column with blanks) is 2, however many
    assert loaded.classes == ["0", "1", "2"] and "'2.0' read as '2' (6 rows)" in loaded.notes
    grey = tmp_path / "grey"
    write_competition(grey, n_train=40, n_test=8, grey=True)
    quick = dict(QUICK, epochs=1, model="fastnet", recipe="fastnet")
    colour = train(TrainConfig(**quick, name="colour"), dataset, weights, Console(quiet=True)).run_dir
    with pytest.raises(PipelineError, match="trained on colour images and these are greyscale, which fastnet cannot "
                                            "adapt: start from a run on greyscale images, or without --pretrained"):
        train(TrainConfig(**quick, pretrained=str(colour / "best.pt")), grey, tmp_path / "w", Console(quiet=True))


def test_thirteenth_hostile_pass_inputs(trained, tmp_path, monkeypatch):
    """Two models of one probability-file label (a copy of one model is that model); --resume of a run whose last.pt is not what config.json says; compare
    of an edited metrics log; a probability file's .json that is a folder; submit of a folder, a JSON or with a broken
    kaggle.json; a YAML date as a name; a truncated .probs.npy; package --out a run."""
    weights, submissions = trained / "weights", trained / "submissions"
    predicted = ["predict", "--device", "cpu", "--tta", "none"]
    assert runner.invoke(app, [*predicted, "--run", "exp"]).exit_code == 0
    saved = (submissions / "exp.probs.npy").read_bytes()
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
    shutil.copy(weights / "exp" / "best.pt", tmp_path / "x" / "exp.pt")  # a copy of the model: the same predictions
    assert runner.invoke(app, [*predicted, "--checkpoint", str(tmp_path / "x" / "exp.pt")]).exit_code == 0
    other = train(TrainConfig(epochs=1, limit=40, name="other", **QUICK), console=Console(quiet=True)).run_dir
    shutil.copy(other / "best.pt", tmp_path / "y" / "exp.pt")  # another model of the same label
    result = runner.invoke(app, [*predicted, "--checkpoint", str(tmp_path / "y" / "exp.pt")])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "exp.probs.json: holds the predictions of" in said and \
        "x/exp.pt, another model of the same label (exp)" in said, result.output
    assert (submissions / "exp.probs.npy").read_bytes() == saved
    shutil.copytree(weights / "exp", weights / "r1")
    config = weights / "r1" / "config.json"
    replaced(config, config.read_text().replace('"lr": 0.02', '"lr": 0.05'))
    result = runner.invoke(app, ["train", "--resume", "r1", "--epochs", "5"])
    assert result.exit_code == 1 and "says --lr 0.05, but last.pt was trained with 0.02" in \
        " ".join(result.output.split()), result.output
    shutil.copytree(weights / "exp", weights / "e2")
    metrics = pd.read_csv(weights / "e2" / "metrics.csv")
    metrics.loc[0, "val_acc"] = 0.9876
    replaced(weights / "e2" / "metrics.csv", metrics.to_csv(index=False))
    result = runner.invoke(app, ["compare", "exp", "e2", "--output", "c.png"])
    assert result.exit_code == 1 and "metrics.csv's epoch 1 says val_acc 0.9876" in " ".join(result.output.split())
    assert not (trained / "c.png").exists()
    (submissions / "e2.probs.npy").unlink(missing_ok=True)
    (submissions / "e2.probs.json").mkdir()
    shutil.copytree(weights / "exp", weights / "e3")
    result = runner.invoke(app, [*predicted, "--run", "e3"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [*predicted, "--checkpoint", str(weights / "e2" / "best.pt")])
    assert result.exit_code == 1 and "e2.probs.json: not a regular file" in " ".join(result.output.split())
    assert not (submissions / "e2.probs.npy").exists()
    for file, message in (("submissions", "not a regular file (a folder, device or pipe); name the submission CSV"),
                          ("submissions/e3.probs.json", "a .json file, not a CSV")):
        result = runner.invoke(app, ["submit", "-m", "x", "--file", file])
        assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output
    for variable in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle"))
    (tmp_path / "kaggle").mkdir()
    (tmp_path / "kaggle" / "kaggle.json").write_text('{"username": "x"')
    result = runner.invoke(app, ["submit", "-m", "x", "--file", "submissions/submission.csv"])
    assert result.exit_code == 1 and "kaggle.json: not a readable API token" in " ".join(result.output.split())
    (tmp_path / "dated.yaml").write_text("name: 2026-12-05\n")
    result = runner.invoke(app, ["train", "--config", str(tmp_path / "dated.yaml"), "--print-config"])
    assert result.exit_code == 1 and "(in YAML, quote it" in result.output, result.output
    replaced(submissions / "exp.probs.npy", "")
    result = runner.invoke(app, ["ensemble", "exp", "e3"])
    assert result.exit_code == 1 and "predict again" in result.output, result.output
    result = runner.invoke(app, ["package", "exp", "--out", "weights/exp", "--competition", "c", "--owner", "o"])
    assert result.exit_code == 1 and "delete" not in result.output and "choose another --out" in result.output


def test_fourteenth_hostile_pass_inputs(trained):
    """Outputs that are links to files of other names (a run's checkpoint, the sample submission, the training labels):
    never written through."""
    weights, dataset, submissions = trained / "weights", trained / "dataset", trained / "submissions"
    submissions.mkdir(exist_ok=True)
    (submissions / "submission.csv").unlink(missing_ok=True)
    (submissions / "submission.csv").symlink_to(dataset / "sampleSubmission.csv")
    (submissions / "exp.probs.npy").unlink(missing_ok=True)
    (submissions / "exp.probs.npy").symlink_to(weights / "exp" / "best.pt")
    sample, best = (dataset / "sampleSubmission.csv").read_bytes(), (weights / "exp" / "best.pt").read_bytes()
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu", "--tta", "none"])
    assert result.exit_code == 1 and "a file of another name, which is never written through" in \
        " ".join(result.output.split()), result.output
    (submissions / "exp.probs.npy").unlink()
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu", "--tta", "none"])
    assert result.exit_code == 1 and "submission.csv: a link to" in result.output, result.output
    (weights / "exp" / "per_class.csv").unlink(missing_ok=True)
    (weights / "exp" / "per_class.csv").symlink_to(dataset / "trainLabels.csv")
    labels = (dataset / "trainLabels.csv").read_bytes()
    result = runner.invoke(app, ["report", "exp", "--device", "cpu"])
    assert result.exit_code == 1 and "per_class.csv: a link to" in result.output, result.output
    assert (dataset / "sampleSubmission.csv").read_bytes() == sample and (dataset / "trainLabels.csv").read_bytes() \
        == labels and (weights / "exp" / "best.pt").read_bytes() == best


def test_a_sample_of_some_test_ids_where_both_sets_share_their_ids_is_no_swap(tmp_path):
    """Train and test ids 1 … N each, and a sample listing some of the test images: not read as swapped folders."""
    from pipeline.layout import check_test

    root = tmp_path / "shared-ids"
    write_competition(root, n_train=40, n_test=40)
    sample = pd.read_csv(root / "sampleSubmission.csv", dtype=str)
    sample.head(30).to_csv(root / "sampleSubmission.csv", index=False)
    notes: list[str] = []
    assert len(check_test(root, notes)) == 30 and "test/ holds 10 image(s) sampleSubmission.csv does not list" in notes[0]


def test_fourteenth_hostile_pass_leftovers(trained, tmp_path):
    """A run's file given as the run; runs' stem of a stemless model; class names holding a comma; a labels header
    whose names are swapped; saved predictions after image_size changed or with an edited .json; --resume over a
    best.pt of another epoch; submit --competition other than dataset/'s; package --out inside dataset/."""
    from pipeline.errors import listed
    from pipeline.experiments import describe_run
    from pipeline.layout import read_id_csv
    from pipeline.submit import submit

    weights, dataset, submissions = trained / "weights", trained / "dataset", trained / "submissions"
    result = runner.invoke(app, ["report", "weights/exp/best.pt"])
    assert result.exit_code == 1 and "a file of run weights/exp, not a run; give the run's folder" in \
        " ".join(result.output.split()), result.output
    fast = fabricate_run(weights, "fast")
    saved = json.loads((fast / "config.json").read_text())
    (fast / "config.json").write_text(json.dumps({**saved, "options": {**saved["options"], "model": "fastnet"}}))
    assert describe_run(Run(fast))["stem"] is None and describe_run(Run(weights / "exp"))["stem"] == "imagenet"
    shutil.rmtree(fast)
    assert listed(["a, b", "c", " d"]) == "'a, b', c, ' d'" and listed("abcd", 2) == "a, b, …"
    (tmp_path / "labels.csv").write_text("label,id\n1,cat\n2,dog\n3,cat\n")
    with pytest.raises(PipelineError, match="duplicate id.*its 'label' column holds one value per row: are the names "
                                            "in its header swapped"):
        read_id_csv(tmp_path / "labels.csv")
    assert runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu", "--tta", "none"]).exit_code == 0
    (dataset / "competition.json").write_text('{"image_size": 24}')
    result = runner.invoke(app, ["ensemble", "exp"])
    assert result.exit_code == 1 and "made from test images decoded at the images' own size, and " \
        "dataset/competition.json now decodes them at image_size 24" in " ".join(result.output.split()), result.output
    (dataset / "competition.json").unlink()
    assert runner.invoke(app, ["ensemble", "exp"]).exit_code == 0
    meta = submissions / "exp.probs.json"
    replaced(meta, meta.read_text().replace('"tta": "none"', '"tta": "flip"'))
    result = runner.invoke(app, ["ensemble", "exp"])
    assert result.exit_code == 1 and "or exp.probs.json was edited since" in " ".join(result.output.split())
    shutil.copytree(weights / "exp", weights / "e2")
    best = load_checkpoint(weights / "e2" / "best.pt")
    save_checkpoint(weights / "e2" / "best.pt", {**best, "epoch": best["epoch"] % 3 + 1})
    with pytest.raises(PipelineError, match=r"e2/best.pt: it holds epoch \d, but the run's best epoch is \d .*restore "
                                            "it from a copy before resuming"):
        resume(weights / "e2", {"epochs": 4})
    (dataset / ".complete.json").write_text(json.dumps({"source": "dogs-vs-cats"}))
    with pytest.raises(PipelineError, match="holds the competition 'dogs-vs-cats', not 'cifar-10'"):
        submit("x", competition="cifar-10")
    result = runner.invoke(app, ["package", "exp", "--out", "dataset/test/pkg", "--competition", "c", "--owner", "o"])
    assert result.exit_code == 1 and "dataset/test/pkg: inside " in result.output and \
        not (dataset / "test" / "pkg").exists(), result.output


def zipped(out: Path, members: list[tuple[str, bytes]]) -> Path:
    import warnings
    with zipfile.ZipFile(out, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a duplicate name, on purpose
        for name, data in members:
            archive.writestr(name, data)
    return out


def test_fifteenth_hostile_pass_archives(project, competition, competition_zip, tmp_path):
    """Archives: a member twice, an inner archive's file over the outer one's, a second labels CSV, a .tar.gz,
    Windows separators, the competition's zip zipped again, macOS metadata; the fetch record a folder; a training
    image of another suffix's case."""
    from pipeline.fetch import fetch
    from pipeline.layout import load_train_set

    files = [(p.relative_to(competition).as_posix(), p.read_bytes()) for p in sorted(competition.rglob("*"))
             if p.is_file() and p.name != "solution.csv"]
    labels = (competition / "trainLabels.csv").read_bytes()
    shuffled = pd.read_csv(competition / "trainLabels.csv", dtype=str)
    shuffled["label"] = shuffled["label"].sample(frac=1, random_state=0).to_numpy()
    shuffled = shuffled.to_csv(index=False).encode()
    for archive, message in (
            (zipped(tmp_path / "twice.zip", [*files, ("trainLabels.csv", shuffled)]), "holds trainLabels.csv twice"),
            (zipped(tmp_path / "inner.zip", [(n, d) for n, d in files if not n.startswith("train/")] + [
                ("train.zip", zipped(tmp_path / "train.zip", [(n, d) for n, d in files if n.startswith("train/")] +
                                     [("trainLabels.csv", shuffled)]).read_bytes())]),
             "inner.zip's train.zip holds trainLabels.csv, which the archive also holds beside it")):
        with pytest.raises(PipelineError, match=message):
            fetch(archive=archive, force=True)
        assert not (project / "dataset" / "trainLabels.csv").exists()
    subprocess.run(["tar", "-czf", tmp_path / "flat.tar.gz", "-C", competition, "train", "test", "trainLabels.csv"],
                   check=True)
    with pytest.raises(PipelineError, match=r"flat.tar.gz: a gzip \(.tar.gz\) archive, not a zip; .*zip its files"):
        fetch(archive=tmp_path / "flat.tar.gz")
    second = fetch(archive=zipped(tmp_path / "v2.zip", [*files, ("trainLabels_v2.csv", shuffled)]), force=True)
    assert any("read the training labels from trainLabels.csv, not trainLabels_v2.csv" in note for note in second.notes)
    assert (project / "dataset" / "trainLabels.csv").read_bytes() == labels
    apple_double = b"\x00\x05\x16\x07" + bytes(60)
    for name, members in (("backslash", [(n.replace("/", "\\"), d) for n, d in files]),
                          ("mac", [*files, ("train/._1.png", apple_double), ("__MACOSX/train/._2.png", apple_double)]),
                          ("zipped-again", [("tiny.zip", competition_zip.read_bytes())])):
        result = fetch(archive=zipped(tmp_path / f"{name}.zip", members), force=True)
        assert (result.train_images, result.test_images) == (400, 40), name
        assert (project / "dataset" / "trainLabels.csv").read_bytes() == labels
    marker = project / "dataset" / ".complete.json"
    marker.unlink()
    marker.mkdir()
    with pytest.raises(PipelineError, match=r".complete.json: not a regular file"):
        fetch(archive=tmp_path / "mac.zip")
    assert (project / "dataset" / "trainLabels.csv").read_bytes() == labels
    marker.rmdir()
    image = next((project / "dataset" / "train").glob("*.png"))
    image.rename(image.with_suffix(".PNG"))
    problems = load_train_set(project / "dataset").problems
    assert f"train/{image.name}: missing (listed in trainLabels.csv); {image.stem}.PNG is there: rename it" in problems


def test_fifteenth_hostile_pass_inputs(trained, tmp_path):
    """--pretrained weights that trained on these images under other classes; a model that cannot take the images'
    size; report in a dataset of other classes; a forced lower precision; milestones beyond the epochs."""
    from pipeline.dataset import run_split, training_arrays
    from pipeline.report import write_report

    weights, dataset = trained / "weights", trained / "dataset"
    relabeled = tmp_path / "relabeled"
    shutil.copytree(dataset, relabeled)
    labels = pd.read_csv(relabeled / "trainLabels.csv", dtype=str)
    labels["label"] = labels["label"].map(lambda name: "fruit" if name in ("apple", "kiwi", "mango") else "animal")
    labels.to_csv(relabeled / "trainLabels.csv", index=False)
    console = Console(record=True, width=400)
    train(TrainConfig(epochs=1, **QUICK, milestones=[5], pretrained=str(weights / "exp" / "best.pt"), name="pt"),
          relabeled, tmp_path / "w", console)
    seen = np.intersect1d(run_split(training_arrays(dataset).targets, 0.2, 42, False)[0],
                          run_split(training_arrays(relabeled).targets, 0.2, 42, False)[1])
    said = console.export_text()
    assert len(seen) and f"trained on {len(seen)} of the 80 val images" in said, said
    from pipeline.experiments import list_runs
    status = list_runs(tmp_path / "w").set_index("run").loc["pt", "status"]  # later, in the runs table and report
    assert status == f"finished: its val scores may flatter it: --pretrained {weights / 'exp' / 'best.pt'} trained " \
        f"on {len(seen)} of the 80 val images", status
    assert "its val scores may flatter it: --pretrained" in (tmp_path / "w" / "pt" / "report.md").read_text()
    assert "--milestones 5 at or beyond --epochs 1: the learning rate never steps down there" in said
    with pytest.raises(PipelineError, match=r"--model timm:vit_tiny_patch16_224 cannot take 32×32 inputs .*--img-size"):
        train(TrainConfig(epochs=1, **QUICK, model="timm:vit_tiny_patch16_224", name="vit"), dataset, weights,
              Console(quiet=True))
    assert not (weights / "vit").exists()
    with pytest.raises(PipelineError, match=r"best.pt: trained on 4 classes, .*trainLabels.csv has 2; only the model "
                                            r"has .*; redraw its report where its competition is laid out"):
        write_report(weights / "exp", relabeled, "cpu", Console(quiet=True))
    console = Console(record=True, width=400)
    predict(runs=[weights / "exp"], tta="none", device="cpu", precision="bf16", console=console)
    assert re.search(r"torch bf16 agrees with torch fp32 on \d+\.\d% of 40 test images", console.export_text())


def test_sixteenth_hostile_pass_inputs(trained, tmp_path):
    """--pretrained and --teacher runs whose images were decoded at another size; compare of such runs; an inner
    archive's member twice; a description naming the id column as the labels; an id in another Unicode form."""
    from pipeline.experiments import compare_runs
    from pipeline.fetch import extract_competition
    from pipeline.layout import check_test

    weights, dataset = trained / "weights", trained / "dataset"
    smaller = tmp_path / "smaller"
    shutil.copytree(dataset, smaller)
    (smaller / "competition.json").write_text('{"image_size": 24}')
    train(TrainConfig(epochs=1, **QUICK, full=True, name="small"), smaller, weights, Console(quiet=True))
    console = Console(record=True, width=400)
    train(TrainConfig(epochs=1, **QUICK, pretrained=str(weights / "small" / "best.pt"), name="from-small"), dataset,
          weights, console)
    assert "trained on another labeled set (other images, labels or classes, another --limit), so whether it saw the " \
        "val images cannot be told" in console.export_text()  # before, no word: its digests of 24-px pixels met none
    with pytest.raises(PipelineError, match=r"--teacher small: .*small/best.pt was trained on 24×24 colour images, "
                                            r"and this dataset's are 32×32 colour"):
        train(TrainConfig(epochs=1, **QUICK, full=True, teacher="small", name="taught"), dataset, weights,
              Console(quiet=True))
    _, table = compare_runs([weights / "exp", weights / "small"])
    assert table.loc["images decoded at"].tolist() == ["32×32", "24×24"]
    inner = zipped(tmp_path / "train.zip", [("train/1.png", b"a"), ("./train/1.png", b"b")])
    with pytest.raises(PipelineError, match=r"outer.zip's train.zip: holds train/1.png twice"):
        extract_competition(zipped(tmp_path / "outer.zip", [("train.zip", inner.read_bytes())]), tmp_path / "out")
    pd.read_csv(dataset / "trainLabels.csv", dtype=str).assign(label="one").to_csv(dataset / "other.csv", index=False)
    described(trained, labels_csv="other.csv")
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu", "--tta", "none"])
    assert result.exit_code == 1 and "or fix competition.json if it names the wrong labels (labels_csv, " \
        "label_columns)" in " ".join(result.output.split()), result.output
    (dataset / "competition.json").unlink()
    (dataset / "test" / "7.png").rename(dataset / "test" / "cafe\u0301.png")
    sample = dataset / "sampleSubmission.csv"
    sample.write_text(re.sub(r"^7,", "caf\u00e9,", sample.read_text(), flags=re.M))
    with pytest.raises(PipelineError, match="spell.* an id in another Unicode form"):
        check_test(dataset)


def test_seventeenth_hostile_pass_inputs(trained):
    """A CV beside a run weighs as one member in predict, as in ensemble; the id column as the labels; --full with
    --val-tta; resume and report after image_size changed."""
    from pipeline.cv import train_cv
    from pipeline.dataset import training_arrays
    from pipeline.report import write_report

    weights, dataset, submissions = trained / "weights", trained / "dataset", trained / "submissions"
    cv, _ = train_cv(TrainConfig(epochs=1, folds=2, **QUICK, name="cv"), dataset, weights, Console(quiet=True))
    predict(runs=[cv.path, weights / "exp"], tta="none", console=Console(quiet=True))
    record = json.loads((submissions / "submission.json").read_text())
    assert record["members"] == ["cv-fold-0.probs.npy", "cv-fold-1.probs.npy", "exp.probs.npy"]
    assert record["weights"] == [0.25, 0.25, 0.5]  # before, a third each: the CV weighed twice the run
    predicted = (submissions / "submission.csv").read_bytes()
    ensemble([Path("cv"), Path("exp")])
    assert (submissions / "submission.csv").read_bytes() == predicted
    described(trained, label_columns=["id"])
    result = runner.invoke(app, ["train", "--epochs", "1", "--full"])
    assert result.exit_code == 1 and "label_columns names 'id', the id column" in " ".join(result.output.split())
    (dataset / "competition.json").unlink()
    labels = dataset / "trainLabels.csv"
    kept = labels.read_bytes()
    frame = pd.read_csv(labels, dtype=str)
    replaced(labels, frame.assign(label="c" + frame["id"]).to_csv(index=False))
    with pytest.raises(PipelineError, match=r"trainLabels.csv: each of its 400 labels names one image only .*label_columns"):
        training_arrays(dataset)
    labels.unlink()
    labels.write_bytes(kept)
    with pytest.raises(PipelineError, match="--val-tta flip averages views of the val images, which --full has none of"):
        TrainConfig(full=True, val_tta="flip").validate()
    (dataset / "competition.json").write_text('{"image_size": 24}')
    for run in (lambda: resume(weights / "exp", {"epochs": 4}), lambda: write_report(weights / "exp", dataset, "cpu")):
        with pytest.raises(PipelineError, match=r"competition.json: its image_size decodes the images at 24×24, but .*exp "
                                                r"trained on them at 32×32; set image_size as it was \(32"):
            run()


def test_eighteenth_hostile_pass_inputs(trained):
    """An empty --pretrained (or --resume, --run, --config); a sample id holding a path; a solution of other column
    names, or of an unknown id, refused before anything is predicted; a probability file after a sample row went."""
    dataset, submissions = trained / "dataset", trained / "submissions"
    with pytest.raises(PipelineError, match=r"--pretrained '': name a weights file"):
        TrainConfig(pretrained="").validate()  # before, it trained from scratch without a word
    for command in (["train", "--resume", ""], ["train", "--config", ""], ["predict", "--run", ""]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1 and "'': names nothing (an unset variable?)" in result.output, (command, result.output)
    sample = pd.read_csv(dataset / "sampleSubmission.csv", dtype=str)
    renamed = trained / "renamed.csv"
    sample.rename(columns={"id": "ID", "label": "Label"}).to_csv(renamed, index=False)
    unknown = trained / "unknown.csv"
    pd.concat([sample, pd.DataFrame({"id": ["99999"], "label": [sample["label"].iat[0]]})]).to_csv(unknown, index=False)
    for path, message in ((renamed, "its header names ID, Label, not the sample submission's id, label; rename"),
                          (unknown, "1 id(s) are not test ids of sampleSubmission.csv")):
        with pytest.raises(PipelineError, match=re.escape(message)):
            predict(runs=[trained / "weights" / "exp"], tta="none", score=path, console=Console(quiet=True))
        assert not submissions.exists() or not any(submissions.iterdir())  # nothing predicted, nothing replaced
    predict(runs=[trained / "weights" / "exp"], tta="none", console=Console(quiet=True))
    replaced(dataset / "sampleSubmission.csv", sample.iloc[1:].to_csv(index=False))
    with pytest.raises(PipelineError, match="made for other test ids than the sample submission lists"):
        ensemble([Path("exp")])
    replaced(dataset / "sampleSubmission.csv", pd.concat([sample, pd.DataFrame(
        {"id": ["../train/1"], "label": [sample["label"].iat[0]]})]).to_csv(index=False))
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu", "--tta", "none"])
    assert result.exit_code == 1 and "id(s) ../train/1 hold a path separator" in " ".join(result.output.split())


def test_nineteenth_hostile_pass_inputs(trained):
    """A one-hot solution row marking no class or two; a run's tb/ a file when it resumes; blank values of the other
    path options; an empty sample id; a training id holding a path; a newer CV than the run predict picks."""
    from pipeline.layout import load_train_set, read_id_csv
    from pipeline.run import latest_best_checkpoint
    from pipeline.submission import check_solution

    weights, dataset = trained / "weights", trained / "dataset"
    classes = ["apple", "kiwi", "mango", "zebra"]
    sample = pd.read_csv(dataset / "sampleSubmission.csv", dtype=str)
    sample[["id"]].assign(**{name: "0.25" for name in classes}).to_csv(dataset / "probs.csv", index=False)
    described(trained, sample_submission="probs.csv", submission_kind="probabilities", submission_columns=classes,
              metric="log_loss")
    marks = pd.DataFrame({"id": sample["id"], **{name: 0 for name in classes}})
    marks.loc[:, "kiwi"] = 1
    for row, name in ((0, "no class"), (1, "2 classes")):
        wrong = marks.copy()
        wrong.loc[row, ["apple", "kiwi"]] = (0, 0) if row == 0 else (1, 1)
        wrong.to_csv(trained / "solution.csv", index=False)
        with pytest.raises(PipelineError, match=rf"a one-hot row marks one class, but 1 row\(s\) do not: "
                                                rf"{sample['id'][row]} \({name}\)"):
            check_solution(trained / "solution.csv", dataset, "log_loss")  # before, scored as the first class column, exit 0
    wrong = marks.astype(str)
    wrong.loc[2, "mango"] = "true"  # before, the line named the first five class columns, not this cell
    wrong.to_csv(trained / "solution.csv", index=False)
    with pytest.raises(PipelineError, match=rf"solution.csv: id {sample['id'][2]} holds 'true' in mango; its class "
                                            "columns must hold 0 or 1"):
        check_solution(trained / "solution.csv", dataset, "log_loss")
    marks.rename(columns={"mango": "Mango"}).drop(columns="zebra").to_csv(trained / "solution.csv", index=False)
    with pytest.raises(PipelineError, match=r"solution.csv: expected the submission's columns \(apple, kiwi, mango, "
                                            r"zebra\) or one column of class names; it lacks mango, zebra and has "
                                            r"Mango; fix its header"):  # before, two lists cut at 5 that read the same
        check_solution(trained / "solution.csv", dataset, "log_loss")
    (dataset / "competition.json").unlink()
    shutil.rmtree(weights / "exp" / "tb")
    (weights / "exp" / "tb").write_text("x")
    with pytest.raises(PipelineError, match=r"exp/tb: a file where a folder belongs; move it aside"):
        resume(weights / "exp", {"epochs": 4})
    for command in (["report", " "], ["compare", "", "exp"], ["fetch", "--archive", ""], ["export", " "]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1 and "names nothing (an unset variable?)" in result.output, (command, result.output)
    replaced(dataset / "sampleSubmission.csv", sample.assign(id=[""] + sample["id"].tolist()[1:]).to_csv(index=False))
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu", "--tta", "none"])
    assert result.exit_code == 1 and "a row with an empty id (line 2); fix that row" in " ".join(result.output.split())
    replaced(dataset / "sampleSubmission.csv", pd.concat([sample, sample.head(1)]).to_csv(index=False))
    with pytest.raises(PipelineError, match="duplicate id.*; keep one row per id"):
        read_id_csv(dataset / "sampleSubmission.csv")
    replaced(dataset / "sampleSubmission.csv", sample.to_csv(index=False))
    labels = pd.read_csv(dataset / "trainLabels.csv", dtype=str)
    replaced(dataset / "trainLabels.csv", pd.concat([labels, pd.DataFrame({"id": ["../test/5"], "label": ["kiwi"]})])
             .to_csv(index=False))
    assert any("the id holds a path separator" in problem for problem in load_train_set(dataset).problems)
    shutil.copytree(weights / "exp", weights / "newer-cv" / "fold-0")
    os.utime(weights / "newer-cv" / "fold-0" / "best.pt")  # written after exp's
    assert "the cross-validation newer-cv is newer (`--run newer-cv` predicts" in latest_best_checkpoint(weights)[1]
    shutil.copytree(weights / "exp", weights / "a-newest-cv" / "fold-0")  # pass 35: the first in folder order won
    os.utime(weights / "a-newest-cv" / "fold-0" / "best.pt", (time.time() + 5,) * 2)
    assert "the cross-validation a-newest-cv is newer" in latest_best_checkpoint(weights)[1]


def test_twentieth_hostile_pass_inputs(trained):
    """A labels file or a solution whose header names a column twice; a run's tb/ a link to another run's."""
    from pipeline.dataset import training_arrays

    weights, dataset = trained / "weights", trained / "dataset"
    labels = (dataset / "trainLabels.csv").read_text().splitlines()
    replaced(dataset / "trainLabels.csv", "\n".join(["id,label,label"] + [f"{row},zebra" for row in labels[1:]]) + "\n")
    with pytest.raises(PipelineError, match="trainLabels.csv: its header names the column 'label' twice"):
        training_arrays(dataset)  # before, the first label column trained without a word
    replaced(dataset / "trainLabels.csv", "\n".join(labels) + "\n")
    sample = (dataset / "sampleSubmission.csv").read_text().splitlines()
    (trained / "solution.csv").write_text("\n".join(["id,label,label"] + [f"{row},kiwi" for row in sample[1:]]) + "\n")
    with pytest.raises(PipelineError, match="solution.csv: its header names the column 'label' twice"):
        predict(runs=[weights / "exp"], tta="none", score=trained / "solution.csv", console=Console(quiet=True))
    shutil.copytree(weights / "exp", weights / "other")
    shutil.rmtree(weights / "exp" / "tb")
    (weights / "exp" / "tb").symlink_to(weights / "other" / "tb")
    with pytest.raises(PipelineError, match=r"exp/tb: a link to .*other/tb, whose files would be written through it"):
        resume(weights / "exp", {"epochs": 4})  # before, its events went into the other run's tb/


def test_twentieth_hostile_pass_leftovers(trained):
    """A finished run's truncated best.pt (before, "the run is failed" came first), `runs` naming each damaged file
    once, an edited config.json blamed on config.json (not best.pt), a one-class solution for ROC AUC."""
    weights, dataset = trained / "weights", trained / "dataset"
    shutil.copytree(weights / "exp", weights / "cut")
    for name in ("best.pt", "last.pt"):
        (weights / "cut" / name).unlink()
        (weights / "cut" / name).write_bytes((weights / "exp" / name).read_bytes()[:5000])
    result = runner.invoke(app, ["predict", "--run", "cut", "--device", "cpu", "--tta", "none"])
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and "cut/best.pt: not a readable PyTorch file" in output, output
    assert "the run is" not in output
    listed = " ".join(runner.invoke(app, ["runs"]).output.split())
    assert "last.pt: not a readable PyTorch file" in listed and "best.pt: not a readable PyTorch file" in listed
    assert listed.count("not a readable PyTorch file") == 2, listed
    shutil.rmtree(weights / "cut")
    config = (weights / "exp" / "config.json").read_text()
    replaced(weights / "exp" / "config.json", config.replace(f'"lr": {QUICK["lr"]},', '"lr": 0.5,'))
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu", "--tta", "none"])
    assert result.exit_code == 1 and "exp/config.json: says --lr 0.5, but last.pt was trained with 0.02" in \
        " ".join(result.output.split()), result.output
    replaced(weights / "exp" / "config.json", config)
    classes = ["apple", "kiwi", "mango", "zebra"]
    sample = pd.read_csv(dataset / "sampleSubmission.csv", dtype=str)
    sample[["id"]].assign(**{name: "0.25" for name in classes}).to_csv(dataset / "probs.csv", index=False)
    described(trained, sample_submission="probs.csv", submission_kind="probabilities", submission_columns=classes,
              metric="mean_roc_auc")
    pd.DataFrame({"id": sample["id"], **{name: int(name == "kiwi") for name in classes}}).to_csv(
        trained / "solution.csv", index=False)
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu", "--tta", "none", "--score",
                                 "solution.csv"])
    assert result.exit_code == 1 and "solution.csv: every row is of class kiwi, and mean ROC AUC needs two " \
        "classes to rank" in " ".join(result.output.split()), result.output
    assert not (trained / "submissions" / "submission.csv").exists()  # refused before predicting


def test_twenty_first_hostile_pass_inputs(trained):
    """A Kaggle solution with a Usage column, through the command line; headers naming a column twice in other case."""
    weights, dataset = trained / "weights", trained / "dataset"
    truth = pd.read_csv(dataset / "solution.csv", dtype=str)  # the fixture's held-out labels
    predict(runs=[weights / "exp"], tta="none", console=Console(quiet=True))
    predicted = pd.read_csv(trained / "submissions" / "submission.csv", dtype=str)
    rows = np.arange(len(truth))
    usage = np.where(rows % 4 == 0, "Ignored", np.where(rows % 2, "Public", "Private"))
    truth[["id", "label"]].assign(Usage=usage).to_csv(trained / "usage.csv", index=False)
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu", "--tta", "none", "--score", "usage.csv"])
    merged = truth.assign(Usage=usage).merge(predicted, on="id", suffixes=("", "_p"))
    right = merged["label"] == merged["label_p"]
    kept = merged["Usage"] != "Ignored"
    line = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert f"accuracy on the scored ids: {right[kept].mean():.4f} ({kept.sum()} ids; Public " \
           f"{right[merged['Usage'] == 'Public'].mean():.4f} on {(merged['Usage'] == 'Public').sum()}; Private " \
           f"{right[merged['Usage'] == 'Private'].mean():.4f} on {(merged['Usage'] == 'Private').sum()}; " \
           f"{(~kept).sum()} Ignored row(s) left out)" in line, line
    truth[["id", "label"]].assign(Label=truth["label"]).to_csv(trained / "cased.csv", index=False)
    result = runner.invoke(app, ["predict", "--run", "exp", "--device", "cpu", "--tta", "none", "--score", "cased.csv"])
    assert result.exit_code == 1 and "cased.csv: its header names the columns 'label' and 'Label', which differ in " \
        "case or spaces only" in " ".join(result.output.split()), result.output
    labels = (dataset / "trainLabels.csv").read_text().splitlines()
    replaced(dataset / "trainLabels.csv", "\n".join(["id,label,Label"] + [f"{row},zebra" for row in labels[1:]]) + "\n")
    result = runner.invoke(app, ["train", "--epochs", "1", "--device", "cpu", "--name", "cased"])
    assert result.exit_code == 1 and "trainLabels.csv: its header names the columns 'label' and 'Label'" in \
        " ".join(result.output.split()), result.output


def test_twenty_third_hostile_pass_inputs(trained):
    """test_images in the description naming a copy of the training folder: predict says how many of the test images
    the model trained on (by the digests its checkpoint records), every one or some."""
    from pipeline.dataset import image_hashes, training_arrays

    weights, dataset = trained / "weights", trained / "dataset"
    seen = load_checkpoint(weights / "exp" / "best.pt")["seen_images"].numpy()
    data = training_arrays(dataset)
    trained_ids = np.array(data.ids)[np.isin(image_hashes(data.images), seen)]
    shutil.copytree(dataset / "train", dataset / "train-copy")
    best = weights / "exp" / "best.pt"
    for ids, said in ((data.ids, f"{len(seen)} of the 400 test images are images {best} trained on (the same pixels"),
                      (trained_ids[:40], f"every one of the 40 test images is an image {best} trained on (the same "
                                         "pixels): does test_images in competition.json name the training folder?")):
        pd.DataFrame({"id": ids, "label": "apple"}).to_csv(dataset / "copy-sample.csv", index=False)
        described(trained, test_images="train-copy", sample_submission="copy-sample.csv")
        console = Console(record=True, width=400)
        predict(runs=[weights / "exp"], tta="none", console=console)
        assert said in console.export_text(), console.export_text()


def test_a_submission_and_its_record_are_replaced_together_or_not_at_all(trained, monkeypatch):
    """A write of submission.csv that fails (a full disk) leaves submission.json as it was, and the reverse: before,
    the CSV was replaced first and a failed record left it described by the previous prediction's members."""
    import pipeline.predict
    from pipeline.workspace import write_failure

    predict(runs=[trained / "weights" / "exp"], tta="none", console=Console(quiet=True))
    submissions = trained / "submissions"
    rows = (submissions / "submission.csv").read_text().splitlines()
    (submissions / "submission.csv").write_text("\n".join(rows[:1] + [row.rsplit(",", 1)[0] + ",earlier"
                                                                       for row in rows[1:]]) + "\n")  # not its labels
    before = {name: (submissions / name).read_bytes() for name in ("submission.csv", "submission.json")}

    def full(path, *args, **kwargs):
        raise write_failure(path, OSError(28, "No space left on device"))

    written = pipeline.predict.write_submission
    monkeypatch.setattr(pipeline.predict, "write_submission", full)
    with pytest.raises(PipelineError, match="submission.csv: cannot write it: no space left on the device"):
        predict(runs=[trained / "weights" / "exp"], tta="flip", console=Console(quiet=True))
    assert {name: (submissions / name).read_bytes() for name in before} == before
    monkeypatch.setattr(pipeline.predict, "write_submission", written)
    real = Path.write_text

    def record_full(path, *args, **kwargs):
        if path.name.startswith(".submission.json.tmp"):
            raise OSError(28, "No space left on device")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", record_full)
    with pytest.raises(PipelineError, match="submission.json: cannot write it: no space left on the device"):
        predict(runs=[trained / "weights" / "exp"], tta="flip", console=Console(quiet=True))
    assert {name: (submissions / name).read_bytes() for name in before} == before  # the CSV too
    assert sorted(p.name for p in submissions.iterdir() if p.name.startswith(".")) == []


def test_a_file_where_a_stage_folder_belongs_is_named_as_such(tmp_path):
    """Pass 26: `dataset` a file made fetch say "cannot create it (File exists); work from a folder you can write"."""
    from pipeline.workspace import created_folder

    (tmp_path / "dataset").write_text("x")
    for folder in (tmp_path / "dataset", tmp_path / "dataset" / "test"):
        with pytest.raises(PipelineError, match=r"dataset: a file where a folder belongs; move it aside"):
            with created_folder(folder):
                pass
