import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from pipeline.competition import Competition, write_competition
from pipeline.errors import PipelineError
from pipeline.metrics import metric_score
from pipeline.submission import LOG_LOSS_FLOOR, submission_values

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
    with pytest.raises(PipelineError, match="probabilities of 1, but the model's classes are a, b"):
        submission_values(np.array([[0.25, 0.75]]), ["a", "b"], tmp_path)
