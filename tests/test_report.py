import importlib.util
import json

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pipeline.cli import app
from pipeline.config import TrainConfig
from pipeline.errors import PipelineError
from pipeline.report import write_report
from pipeline.run import Run
from pipeline.train import train
from tests.fixtures import CLASSES, QUICK, assert_png, fabricate_run, runner


def test_a_run_ends_with_its_pictures_tables_and_hparams(fetched):
    result = train(TrainConfig(epochs=2, batch_size=32, workers=0, lr=0.02, milestones=[1]))
    run = result.run_dir
    for name in ("curves.png", "confusion.png"):
        assert_png(run / name)
    per_class = pd.read_csv(run / "per_class.csv")
    assert per_class["class"].tolist() == sorted(CLASSES)
    assert list(per_class.columns) == ["class", "precision", "recall", "f1", "support", "accuracy", "roc_auc"]
    assert per_class["support"].sum() == 80
    # the report's predictions are the best epoch's: they reproduce its val accuracy
    correct = (per_class["accuracy"] * per_class["support"]).sum()
    assert correct / 80 == pytest.approx(result.best_score, abs=1e-3)
    report = (run / "report.md").read_text()
    assert "![curves](curves.png)" in report and "![confusion](confusion.png)" in report
    assert "## Most confused pairs (val)" in report and "![top losses](top_losses.png)" in report
    assert_png(run / "top_losses.png")
    if importlib.util.find_spec("captum"):  # a machine without it (a GPU image) reports without Grad-CAM
        assert_png(run / "error_cams.png") and "![Grad-CAM](error_cams.png)" in report
    pairs = pd.read_csv(run / "confused_pairs.csv")
    assert list(pairs.columns) == ["true", "predicted", "images", "share_of_true"]
    assert pairs["images"].sum() == round(80 * (1 - result.best_score)) or len(pairs) == 10
    assert f"best val accuracy {result.best_score:.4f}" in report and "| lr | 0.02 |" in report
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    assert {"hparam/best_val_score", "hparam/val_acc_at_best", "accuracy/val", "loss/train", "lr"} <= set(events.Tags()["scalars"])
    assert events.Scalars("hparam/best_val_score")[-1].value == pytest.approx(result.best_score)

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


def test_a_resumed_run_whose_best_epoch_came_earlier_reports_its_best_checkpoint(fetched):
    from pipeline.run import load_checkpoint, save_checkpoint
    from pipeline.train import resume
    run = train(TrainConfig(epochs=2, milestones=[1], **QUICK)).run_dir
    last = load_checkpoint(run / "last.pt")
    save_checkpoint(run / "last.pt", {**last, "best_acc": 1.0})  # no later epoch can beat it
    best_epoch = load_checkpoint(run / "best.pt")["epoch"]
    (run / "per_class.csv").unlink()  # the resumed run must draw it again
    resume(run, {"epochs": 3})
    assert load_checkpoint(run / "best.pt")["epoch"] == best_epoch  # epoch 3 did not replace it
    per_class = pd.read_csv(run / "per_class.csv")
    correct = (per_class["accuracy"] * per_class["support"]).sum()
    metrics = pd.read_csv(run / "metrics.csv").set_index("epoch")
    assert correct / per_class["support"].sum() == pytest.approx(metrics.loc[best_epoch, "val_acc"], abs=1e-6)


def test_mislabeled_training_images_are_found_in_the_val_split(fetched):
    pytest.importorskip("cleanlab")
    labels = pd.read_csv(fetched / "dataset" / "trainLabels.csv")
    flipped = labels.index[:40]  # a tenth of the labels, wrong
    classes = sorted(CLASSES)
    labels.loc[flipped, "label"] = [classes[(classes.index(c) + 1) % len(classes)] for c in labels.loc[flipped, "label"]]
    labels.to_csv(fetched / "dataset" / "trainLabels.csv", index=False)
    run = train(TrainConfig(epochs=3, **QUICK)).run_dir
    issues = pd.read_csv(run / "label_issues.csv")
    assert list(issues.columns) == ["id", "given", "suggested", "given_probability", "suggested_probability"]
    wrong = set(labels.loc[flipped, "id"].astype(str))
    found = set(issues["id"].astype(str))
    assert len(found & wrong) >= 0.6 * len(found) and found & wrong  # mostly the flipped ones
    assert_png(run / "label_issues.png")
    assert "## Likely mislabeled (val)" in (run / "report.md").read_text()
