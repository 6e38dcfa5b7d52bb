import json
import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import TrainConfig
from pipeline.errors import PipelineError
from pipeline.experiments import COLUMNS, compare_runs, list_runs
from pipeline.figures import ValPredictions, per_class_table, plot_confusion
from pipeline.report import write_report
from pipeline.run import Run
from pipeline.train import train
from tests.fixtures import CLASSES

runner = CliRunner()


def assert_png(path, min_size=(400, 250)):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        assert image.width >= min_size[0] and image.height >= min_size[1], image.size


def fabricate_run(weights, name, lr=0.1, val_acc=(0.5, 0.7, 0.6), epochs=None, status="finished", pid=None,
                  metrics=True, created="2026-01-01T10:00:00+00:00"):
    """A run folder as `pipeline train` leaves it, without training anything."""
    run = weights / name
    run.mkdir(parents=True)
    options = TrainConfig(lr=lr, epochs=epochs or len(val_acc), name=name, milestones=[2]).__dict__
    (run / "config.json").write_text(json.dumps({"options": options, "classes": ["a", "b"], "created": created}))
    if metrics:
        n = len(val_acc)
        pd.DataFrame({"epoch": range(1, n + 1), "train_loss": np.linspace(2, 1, n), "train_acc": np.linspace(0.4, 0.8, n),
                      "val_loss": np.linspace(2.2, 1.2, n), "val_acc": val_acc, "val_f1": np.array(val_acc) - 0.05,
                      "lr": [lr] * n, "seconds": [2.0] * n, "wall_s": np.arange(1, n + 1) * 2.0,
                      "images_per_s": [100.0] * n}).to_csv(run / "metrics.csv", index=False)
    if status:
        (run / "status.json").write_text(json.dumps({"state": status, "pid": pid or os.getpid(),
                                                     "host": socket.gethostname()}))
    return run


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_run_ends_with_its_pictures_tables_and_hparams(fetched):
    result = train(TrainConfig(epochs=2, batch_size=32, workers=0, lr=0.02, milestones=[1]))
    run = result.run_dir
    for name in ("curves.png", "confusion.png"):
        assert_png(run / name)
    per_class = pd.read_csv(run / "per_class.csv")
    assert per_class["class"].tolist() == sorted(CLASSES)
    assert list(per_class.columns) == ["class", "precision", "recall", "f1", "support", "accuracy"]
    assert per_class["support"].sum() == 80
    # the report's predictions are the best epoch's: they reproduce its val accuracy
    correct = (per_class["accuracy"] * per_class["support"]).sum()
    assert correct / 80 == pytest.approx(result.best_acc, abs=1e-3)
    report = (run / "report.md").read_text()
    assert "![curves](curves.png)" in report and "![confusion](confusion.png)" in report
    assert f"best val accuracy {result.best_acc:.4f}" in report and "| lr | 0.02 |" in report
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    assert {"hparam/best_val_acc", "accuracy/val", "loss/train", "lr"} <= set(events.Tags()["scalars"])
    assert events.Scalars("hparam/best_val_acc")[-1].value == pytest.approx(result.best_acc)

    for path in Run(run).report_files:
        path.unlink()
    regenerated = runner.invoke(app, ["report", "exp"])
    assert regenerated.exit_code == 0, regenerated.output
    assert all(path.is_file() for path in Run(run).report_files)
    assert pd.read_csv(run / "per_class.csv").equals(per_class)


def test_full_run_report_has_curves_but_no_confusion(fetched):
    run = train(TrainConfig(epochs=1, full=True, batch_size=32, workers=0, limit=80)).run_dir
    assert_png(run / "curves.png")
    assert not (run / "confusion.png").exists()
    assert "no validation" in (run / "report.md").read_text()


def test_confusion_and_per_class_match_sklearn(tmp_path):
    classes = ["cat", "dog", "a-rather-long-class-name"]
    actual = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = np.array([0, 1, 0, 1, 1, 2, 0, 2, 1])
    predictions = ValPredictions(classes, actual, predicted)
    counts = plot_confusion(predictions, "known", tmp_path / "confusion.png")
    expected = np.array([[2, 1, 0], [0, 2, 0], [1, 1, 2]])
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(counts, confusion_matrix(actual, predicted))
    assert_png(tmp_path / "confusion.png")
    table = per_class_table(predictions)
    precision, recall, f1, support = precision_recall_fscore_support(actual, predicted)
    np.testing.assert_allclose(table[["precision", "recall", "f1"]].to_numpy().T, [precision, recall, f1], atol=1e-4)
    assert table["support"].tolist() == support.tolist() == [3, 2, 4]
    assert table["accuracy"].tolist() == pytest.approx([2 / 3, 1.0, 0.5], abs=1e-4)


def test_many_classes_stay_legible(tmp_path):
    rng = np.random.default_rng(0)
    classes = [f"class-{k:03d}" for k in range(40)]
    actual = rng.integers(0, 40, 2000)
    predicted = np.where(rng.random(2000) < 0.7, actual, rng.integers(0, 40, 2000))
    plot_confusion(ValPredictions(classes, actual, predicted), "forty", tmp_path / "c.png")
    assert_png(tmp_path / "c.png", (1500, 800))


def test_runs_table_shows_finished_running_crashed_and_broken_runs(project):
    weights = project / "weights"
    fabricate_run(weights, "good", lr=0.1, val_acc=(0.5, 0.9, 0.8), created="2026-01-01T10:00:00+00:00")
    fabricate_run(weights, "better-lr", lr=0.05, val_acc=(0.6, 0.95), epochs=2, created="2026-01-02T10:00:00+00:00")
    fabricate_run(weights, "live", val_acc=(0.3,), epochs=10, status="running", created="2026-01-03T10:00:00+00:00")
    fabricate_run(weights, "dead", val_acc=(0.3,), epochs=10, status="running", pid=dead_pid(),
                  created="2026-01-04T10:00:00+00:00")
    fabricate_run(weights, "nometrics", metrics=False, status=None, created="2026-01-05T10:00:00+00:00")
    (weights / "not-a-run").mkdir()
    table = list_runs(weights)
    assert list(table.columns) == list(COLUMNS)
    assert table["run"].tolist() == ["good", "better-lr", "live", "dead", "nometrics"]
    rows = table.set_index("run")
    assert rows.loc["good", "best_acc"] == 0.9 and rows.loc["good", "best_epoch"] == 2
    assert rows.loc["good", "macro_f1"] == pytest.approx(0.85) and rows.loc["good", "wall_s"] == 6.0
    assert rows.loc["good", "schedule"] == "step 2" and rows.loc["good", "status"] == "finished"
    assert rows.loc["live", "status"] == "running" and rows.loc["dead", "status"] == "crashed"
    assert rows.loc["nometrics", "status"].startswith("incomplete: ") and "no metrics" in rows.loc["nometrics", "status"]
    assert pd.isna(rows.loc["nometrics", "best_acc"])
    by_acc = list_runs(weights, sort="best_acc", descending=True)
    assert by_acc["run"].tolist()[:2] == ["better-lr", "good"] and by_acc["run"].iloc[-1] == "nometrics"
    with pytest.raises(PipelineError, match="--sort 'accuracy': choose one of run, date"):
        list_runs(weights, sort="accuracy")

    shown = runner.invoke(app, ["runs", "--sort", "lr", "--csv", "runs.csv"])
    assert shown.exit_code == 0, shown.output
    assert "crashed" in shown.output and "better-lr" in shown.output
    exported = pd.read_csv(project / "runs.csv")
    assert exported["run"].tolist()[:2] == ["better-lr", "good"] and len(exported) == 5


def test_no_runs_yet(project):
    result = runner.invoke(app, ["runs"])
    assert result.exit_code == 0 and "no runs under" in result.output


def test_compare_overlays_runs_and_lists_differences(project):
    weights = project / "weights"
    fabricate_run(weights, "a", lr=0.1, val_acc=(0.5, 0.9, 0.8))
    fabricate_run(weights, "b", lr=0.05, val_acc=(0.6, 0.95))
    fabricate_run(weights, "c", lr=0.1, val_acc=(0.2, 0.3, 0.4, 0.5))
    figure, table = compare_runs([weights / "a", weights / "b", weights / "c"])
    assert figure == weights / "compare.png"
    assert_png(figure, (1000, 700))
    assert "lr" in table.index and "epochs" in table.index and "seed" not in table.index and "name" not in table.index
    assert table.loc["lr"].tolist() == [0.1, 0.05, 0.1]
    assert table.loc["best val acc"].tolist() == [0.9, 0.95, 0.5]
    shown = runner.invoke(app, ["compare", "a", "b", "--output", "ab.png"])
    assert shown.exit_code == 0, shown.output
    assert "0.05" in shown.output and (project / "ab.png").is_file()

    fabricate_run(weights, "nometrics", metrics=False)
    broken = runner.invoke(app, ["compare", "a", "nometrics"])
    assert broken.exit_code == 1
    assert broken.output.strip() == f"error: {weights / 'nometrics' / 'metrics.csv'}: no metrics (the run has not finished an epoch)"
    assert runner.invoke(app, ["compare", "a"]).exit_code == 1
    assert "no such run" in runner.invoke(app, ["compare", "a", "zzz"]).output


def test_report_errors_are_one_line(fetched):
    missing = runner.invoke(app, ["report", "nope"])
    assert missing.exit_code == 1 and missing.output.startswith("error: nope: no such run")
    fabricate_run(fetched / "weights", "nockpt")
    no_checkpoint = runner.invoke(app, ["report", "nockpt"])
    assert no_checkpoint.exit_code == 1 and "best.pt: not found" in no_checkpoint.output
    (fetched / "weights" / "nockpt" / "config.json").write_text("{not json")
    assert "config.json: not valid JSON" in runner.invoke(app, ["report", "nockpt"]).output
    with pytest.raises(PipelineError, match="no such run folder"):
        write_report(fetched / "weights" / "absent")


def test_runs_saved_by_older_versions_still_load(tmp_path):
    from pipeline.config import saved_config
    old = {"model": "torchvision", "stem": "imagenet", "lr": 0.01, "epochs": 4}  # before recipe/full/ema existed
    config = saved_config(old, tmp_path / "config.json")
    assert (config.model, config.lr, config.full, config.recipe) == ("torchvision", 0.01, False, "seed")
    with pytest.raises(PipelineError, match="config.json: saved by a newer pipeline .unknown options warp."):
        saved_config({**old, "warp": 9}, tmp_path / "config.json")
