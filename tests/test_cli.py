import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import pipeline.train
from pipeline.cli import app
from tests.fixtures import runner


@pytest.fixture
def captured(monkeypatch):
    """Replace training by a recorder of the config the CLI builds."""
    seen = {}

    def record(config, console=None):
        seen["config"] = config
        return pipeline.train.TrainResult(seen.setdefault("dir", Path("weights/exp")), "accuracy", 0.0, 0)

    monkeypatch.setattr(pipeline.train, "train", record)
    return seen


@pytest.mark.parametrize("args, milestones", [
    (["--improved", "--lr", "0.01", "--milestones", "30", "60", "90"], [30, 60, 90]),
    (["--milestones", "30", "60", "--epochs", "70", "--improved", "--lr", "0.01"], [30, 60]),
    (["--improved", "--lr", "0.01", "--milestones", "30,60,90"], [30, 60, 90]),
    (["--improved", "--lr", "0.01", "--milestones", "30", "--milestones", "60"], [30, 60]),
])
def test_seed_command_parses_exactly_as_written(captured, args, milestones):
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 0, result.output
    config = captured["config"]
    assert (config.stem, config.lr, config.milestones) == ("improved", 0.01, milestones)


def test_bare_train_is_the_fastnet_recipe_and_seed_keeps_seed_004s(captured):
    assert runner.invoke(app, ["train"]).exit_code == 0
    config = captured["config"]
    assert (config.recipe, config.model, config.epochs, config.lr, config.batch_size, config.schedule, config.aug,
            config.norm_bias_lr, config.lookahead) == (
        "fastnet", "fastnet", 36, 0.75, 512, "onecycle", "shift-altflip", 1, False)
    assert runner.invoke(app, ["train", "--recipe", "seed"]).exit_code == 0
    config = captured["config"]
    assert (config.model, config.stem, config.epochs, config.lr, config.momentum, config.weight_decay,
            config.batch_size, config.milestones, config.gamma, config.seed) == (
        "custom", "imagenet", 100, 0.01, 0.9, 1e-4, 128, [], 0.1, 42)


def test_cli_errors_are_one_line(project):
    result = runner.invoke(app, ["train", "--improved", "--stem", "improved-pool"])
    assert result.exit_code == 1 and result.output.strip() == "error: --improved contradicts --stem improved-pool"
    result = runner.invoke(app, ["train", "--milestones", "ten"])
    assert result.exit_code == 1 and "--milestones takes whole epochs" in result.output


def test_end_to_end_on_tiny_competition(project, competition_zip):
    assert runner.invoke(app, ["fetch", "--archive", str(competition_zip)]).exit_code == 0
    again = runner.invoke(app, ["fetch", "--archive", str(competition_zip)])
    assert "already holds" in again.output
    trained = runner.invoke(app, ["train", "--epochs", "2", "--batch-size", "32", "--lr", "0.02", "--workers", "0",
                                  "--milestones", "1"])
    assert trained.exit_code == 0, trained.output
    assert "epoch 2/2" in trained.output and "best val accuracy" in trained.output
    resumed = runner.invoke(app, ["train", "--resume", "weights/exp", "--epochs", "3", "--workers", "0"])
    assert resumed.exit_code == 0, resumed.output
    assert pd.read_csv(project / "weights" / "exp" / "metrics.csv")["epoch"].tolist() == [1, 2, 3]
    assert json.loads((project / "weights" / "exp" / "config.json").read_text())["options"]["epochs"] == 3
    refused = runner.invoke(app, ["train", "--resume", "weights/exp", "--improved", "--epochs", "4"])
    assert refused.exit_code == 1 and "--stem cannot change when resuming" in refused.output
    shutil.copy(project / "dataset" / "sampleSubmission.csv", project / "expected.csv")
    predicted = runner.invoke(app, ["predict", "--tta", "none"])
    assert predicted.exit_code == 0, predicted.output
    assert "40 rows, valid" in predicted.output
    submission = pd.read_csv(project / "submissions" / "submission.csv", dtype=str)
    assert submission["id"].tolist() == pd.read_csv(project / "expected.csv", dtype=str)["id"].tolist()
    ensembled = runner.invoke(app, ["ensemble", "exp"])
    assert ensembled.exit_code == 0 and "averaged: exp.probs.npy" in ensembled.output
    assert runner.invoke(app, ["ensemble", "missing"]).exit_code == 1


def test_console_script_reports_errors_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipeline", "predict"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: ")
    assert "no trained run" in result.stderr and "Traceback" not in result.stderr
    help_text = subprocess.run([shutil.which("pipeline") or sys.executable, "--help"] if shutil.which("pipeline")
                               else [sys.executable, "-m", "pipeline", "--help"],
                               capture_output=True, text=True, timeout=120).stdout
    assert all(command in help_text for command in ("fetch", "train", "predict"))


def test_summary_command():
    result = runner.invoke(app, ["summary", "--model", "resnet18", "--img-size", "32"])
    assert result.exit_code == 0, result.output
    assert "total parameters: 11181642" in result.output and "layer4.1.conv2" in result.output
    wrong = runner.invoke(app, ["summary", "--model", "torchvision:resnt18"])
    assert wrong.exit_code == 1 and "close matches: torchvision:resnet18" in wrong.output
    grey = runner.invoke(app, ["summary", "--model", "timm:resnet18", "--in-chans", "1", "--img-size", "28",
                               "--num-classes", "10"])
    assert grey.exit_code == 0, grey.output
    # one input channel: the stem conv has 64·1·7·7 weights instead of 64·3·7·7
    assert "total parameters: 11175370" in grey.output and "3,136" in grey.output


def test_transfer_options_reach_the_config(captured):
    args = ["train", "--model", "timm:resnet18", "--pretrained", "w.safetensors", "--freeze-backbone",
            "--head-dropout", "0.5", "--img-size", "96"]
    assert runner.invoke(app, args).exit_code == 0
    config = captured["config"]
    assert (config.pretrained, config.freeze_backbone, config.head_dropout, config.img_size) == (
        "w.safetensors", True, 0.5, 96)


def test_train_accepts_library_model_names(captured):
    assert runner.invoke(app, ["train", "--model", "timm:resnet18"]).exit_code == 0
    assert captured["config"].model == "timm:resnet18"


def test_interrupt_is_one_line_with_status_130(project, monkeypatch):
    import pipeline.fetch

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.fetch, "fetch", interrupted)
    result = runner.invoke(app, ["fetch", "--sample"])
    assert result.exit_code == 130 and result.output.startswith("interrupted:")
    assert result.output.count("\n") == 1


def test_ctrl_c_during_training_is_status_130_with_how_to_resume(fetched, monkeypatch):
    """Before, the line was an error of status 1: a script could not tell an interruption from a failure."""
    import pipeline.train

    real, calls = pipeline.train.evaluate, []

    def evaluate(ctx):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(ctx)

    monkeypatch.setattr(pipeline.train, "evaluate", evaluate)
    result = runner.invoke(app, ["train", "--epochs", "3", "--limit", "64", "--batch-size", "32", "--workers", "0",
                                 "--device", "cpu", "--name", "cut"])
    assert result.exit_code == 130, result.output
    assert "interrupted during epoch 2; continue with `pipeline train --resume" in " ".join(result.output.split())
    assert json.loads((fetched / "weights" / "cut" / "status.json").read_text())["state"] == "interrupted"


def test_ctrl_c_that_a_library_turns_into_its_own_error_is_still_an_interruption(fetched, monkeypatch):
    """matplotlib's renderer, interrupted, raises ValueError("Invalid bounding box"): before, a traceback, status 1,
    and the run marked failed."""
    import signal

    import pipeline.train

    def draw_report(*args, **kwargs):
        try:
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # Ctrl-C arriving inside the renderer
        except KeyboardInterrupt:
            raise ValueError("Invalid bounding box") from None

    monkeypatch.setattr(pipeline.train, "draw_report", draw_report)
    result = runner.invoke(app, ["train", "--epochs", "1", "--limit", "64", "--batch-size", "32", "--workers", "0",
                                 "--device", "cpu", "--recipe", "seed", "--name", "drawn"])
    said = " ".join(result.output.split())
    assert result.exit_code == 130 and "interrupted after epoch 1, while its report was drawn" in said, said
    assert json.loads((fetched / "weights" / "drawn" / "status.json").read_text())["state"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.setattr(pipeline.train, "draw_report", lambda *args, **kwargs: [])  # the resume finishes the run
    result = runner.invoke(app, ["train", "--resume", "weights/drawn", "--device", "cpu"])
    assert result.exit_code == 0 and "all 1 epoch(s) trained: finishing its report" in result.output, result.output
    assert json.loads((fetched / "weights" / "drawn" / "status.json").read_text())["state"] == "finished"


def test_real_ctrl_c_during_fetch_leaves_nothing(tmp_path):
    import signal
    import time
    # a shell without job control starts background jobs with SIGINT ignored: give the child Ctrl-C back
    process = subprocess.Popen([sys.executable, "-m", "pipeline", "fetch", "--sample"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not list((tmp_path / "dataset").glob(".staging-*/train/*.png")) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.startswith("interrupted:") and "Traceback" not in stderr
    assert not (tmp_path / "dataset").exists()  # no staging, no layout, no marker, not even the folder it made


def test_train_help_defaults_come_from_the_recipes():
    from typer.main import get_command

    from pipeline.config import OPTION_NAMES, RECIPES, TrainConfig, default_help
    options = {p.name: p.help for p in get_command(app).commands["train"].params if p.name in OPTION_NAMES - {"full"}}
    assert len(options) == len(OPTION_NAMES) - 1  # every option but the --full flag
    for name, text in options.items():
        assert text.endswith(default_help(name)), name
    assert default_help("epochs") == (f"(default fastnet: {RECIPES['fastnet']['epochs']}, seed: {TrainConfig.epochs}, "
                                      f"fast: {RECIPES['fast']['epochs']}, fastnet-wide: {RECIPES['fastnet-wide']['epochs']})")
    assert default_help("seed") == "(default 42)"
    assert default_help("nesterov") == "(default fastnet: on, seed: off, fast: on, fastnet-wide: on)"
