import json
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, log_loss, roc_auc_score

from pipeline.cli import app
from pipeline.competition import Competition, write_competition
from pipeline.errors import PipelineError
from pipeline.metrics import metric_score
from pipeline.predict import predict
from pipeline.run import load_checkpoint, save_checkpoint
from pipeline.submission import LOG_LOSS_FLOOR, submission_values
from pipeline.train import resume
from tests.fixtures import runner

PROBABILITIES = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
TARGETS = np.array([0, 1, 1, 2])


def test_the_metrics_are_scikit_learns():
    assert metric_score("accuracy", TARGETS, PROBABILITIES) == 0.5
    assert metric_score("f1_micro", TARGETS, PROBABILITIES) == 0.5
    assert metric_score("f1_macro", TARGETS, PROBABILITIES) == pytest.approx((1 / 1.5 + 2 / 3 + 0) / 3)
    assert metric_score("log_loss", TARGETS, PROBABILITIES) == pytest.approx(log_loss(TARGETS, PROBABILITIES))
    per_class = [roc_auc_score(TARGETS == k, PROBABILITIES[:, k]) for k in range(3)]
    assert metric_score("mean_roc_auc", TARGETS, PROBABILITIES) == pytest.approx(np.mean(per_class))
    binary = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3], [0.2, 0.8]])
    assert metric_score("roc_auc", np.array([0, 1, 1, 1]), binary) == roc_auc_score([0, 1, 1, 1], binary[:, 1])


def test_roc_auc_skips_classes_absent_and_refuses_a_single_class():
    only_two = np.array([0, 1, 1, 0])  # class 2 never occurs: its column has no AUC
    expected = np.mean([roc_auc_score(only_two == k, PROBABILITIES[:, k]) for k in (0, 1)])
    assert metric_score("mean_roc_auc", only_two, PROBABILITIES) == pytest.approx(expected)
    with pytest.raises(PipelineError, match="a single class"):
        metric_score("roc_auc", np.zeros(4, dtype=int), PROBABILITIES[:, :2])


def test_submission_values_of_each_kind(tmp_path):
    classes = ["a", "b", "c"]
    assert submission_values(PROBABILITIES, classes, tmp_path) == [["a"], ["b"], ["c"], ["a"]]
    write_competition(tmp_path, Competition(submission_columns=("c", "a", "b"), submission_kind="probabilities",
                                            metric="log_loss"))
    rows = np.array(submission_values(np.array([[1.0, 0.0, 0.0]]), classes, tmp_path), dtype=float)
    assert rows[0, 1] > rows[0, 0] >= LOG_LOSS_FLOOR * 0.99 and rows.sum() == pytest.approx(1)  # columns c, a, b
    write_competition(tmp_path, Competition(submission_columns=("a", "b"), submission_kind="probabilities"))
    with pytest.raises(PipelineError, match="takes the probabilities of a, b, but the model's classes are a, b, c"):
        submission_values(PROBABILITIES, classes, tmp_path)
    write_competition(tmp_path, Competition(label_kind="binary", submission_kind="probability", metric="roc_auc"))
    assert submission_values(np.array([[0.25, 0.75]]), ["0", "1"], tmp_path) == [["0.750000"]]
    with pytest.raises(PipelineError, match="probability of class 1 of the classes 0 and 1, but the model's classes are a, b"):
        submission_values(np.array([[0.25, 0.75]]), ["a", "b"], tmp_path)


def test_predict_scores_by_metric_and_refuses_one_a_class_per_row_cannot_take(trained):
    root, out = trained / "dataset", trained / "submissions" / "submission.csv"
    solution = str(root / "solution.csv")
    by_f1 = runner.invoke(app, ["predict", "--tta", "none", "--score", solution, "--metric", "f1_macro"])
    assert by_f1.exit_code == 0, by_f1.output
    submitted, truth = pd.read_csv(out, dtype=str), pd.read_csv(root / "solution.csv", dtype=str)
    expected = f1_score(truth["label"], submitted.set_index("id").loc[truth["id"], "label"], average="macro")
    assert f"macro-F1 on the scored ids: {expected:.4f}" in by_f1.output
    written = out.read_bytes()
    for args, message in ((["--score", solution, "--metric", "log_loss"],
                           "error: --metric log_loss scores probabilities, but sampleSubmission.csv takes a class per row"),
                          (["--metric", "f1_micro", "--score", "none.csv"], "error: none.csv: no such solution file"),
                          (["--metric", "f1_micro"], "error: --metric f1_micro chooses how --score scores: pass --score")):
        refused = runner.invoke(app, ["predict", *args])
        assert refused.exit_code == 1 and refused.output.startswith(message), refused.output
    assert out.read_bytes() == written  # refused before anything was predicted
    assert runner.invoke(app, ["predict", "--metric", "top5"]).exit_code == 2
    write_competition(root, Competition(metric="f1_micro"))  # the description's metric, when --metric is not given
    assert predict(score=root / "solution.csv", tta="none").metric == "f1_micro"


def test_train_takes_metric_and_a_run_from_before_it_resumes_ranked_by_accuracy(trained):
    trained_by_f1 = runner.invoke(app, ["train", "--recipe", "seed", "--metric", "f1_macro", "--epochs", "1",
                                        "--limit", "64", "--batch-size", "32", "--workers", "0", "--name", "f1"])
    assert trained_by_f1.exit_code == 0, trained_by_f1.output
    assert "done: best val macro-F1 " in trained_by_f1.output
    run = trained / "weights" / "f1"
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["val_score"].tolist() == metrics["val_f1"].tolist()
    assert json.loads((run / "config.json").read_text())["options"]["metric"] == "f1_macro"
    listed = runner.invoke(app, ["runs"])
    assert "f1_macro" in listed.output and "accuracy" in listed.output  # the new run's, and exp's
    old = trained / "weights" / "exp"  # as runs were before --metric: no metric, best_acc, no val_score
    best = load_checkpoint(old / "best.pt")
    del best["config"]["options"]["metric"]
    (old / "best.pt").unlink()  # a new file: the run's files are hard links to the session's
    save_checkpoint(old / "best.pt", best)
    last = load_checkpoint(old / "last.pt")
    last["best_acc"] = last.pop("best_score")
    del last["config"]["options"]["metric"]
    (old / "last.pt").unlink()
    save_checkpoint(old / "last.pt", last)
    config = json.loads((old / "config.json").read_text())
    del config["options"]["metric"]
    (old / "config.json").unlink()  # a new file: the run's files are hard links to the session's
    (old / "config.json").write_text(json.dumps(config))
    pd.read_csv(old / "metrics.csv").drop(columns="val_score").to_csv(old / "metrics.csv", index=False)
    resumed = resume(old, {"epochs": 4})
    assert resumed.metric == "accuracy"
    metrics = pd.read_csv(old / "metrics.csv")
    assert resumed.best_score == pytest.approx(metrics["val_acc"].max(), abs=1e-6)


def test_log_loss_rescales_rows_as_kaggle_does_without_a_warning():
    rows = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.2], [0.0, 0.5, 0.5]], np.float32)  # the second sums to 0.6
    targets = np.array([0, 1, 2])
    clipped = np.clip(rows.astype(np.float64), 1e-15, 1)
    expected = -np.log((clipped / clipped.sum(1, keepdims=True))[np.arange(3), targets]).mean()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metric_score("log_loss", targets, rows) == pytest.approx(expected, rel=1e-9)
