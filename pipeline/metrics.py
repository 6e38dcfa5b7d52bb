"""The competition metrics (dataset/competition.json's `metric`, or `--metric`), from scikit-learn, over class
probabilities. The names and directions import nothing heavy: the CLI checks `--metric` before torch loads."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.errors import PipelineError

HIGHER_IS_BETTER = {"accuracy": True, "f1_macro": True, "f1_micro": True, "log_loss": False, "roc_auc": True,
                    "mean_roc_auc": True}
METRICS = tuple(HIGHER_IS_BETTER)
METRIC_LABELS = {"accuracy": "accuracy", "f1_macro": "macro-F1", "f1_micro": "micro-F1", "log_loss": "log loss",
                 "roc_auc": "ROC AUC", "mean_roc_auc": "mean ROC AUC"}  # as reports and lines name them
LOG_LOSS_CLIP = 1e-15  # probabilities are raised to this before a log loss, as scikit-learn and Kaggle do
LABEL_METRICS = ("accuracy", "f1_macro", "f1_micro")  # those a class per row (no probabilities) can be scored by
if TYPE_CHECKING:
    import numpy as np


def check_metric(metric: str, where: str = "--metric") -> None:
    if metric not in HIGHER_IS_BETTER:
        raise PipelineError(f"{where} {metric!r} is not one of {', '.join(METRICS)}")


def better(metric: str, score: float, than: float) -> bool:
    """`score` is strictly better than `than` by `metric` (lower for log loss, higher for the rest)."""
    return score > than if HIGHER_IS_BETTER[metric] else score < than


def metric_score(metric: str, targets: np.ndarray, probabilities: np.ndarray) -> float:
    """`metric` of (N, K) class probabilities against class indices: accuracy, macro/micro F1 of the most probable
    class, log loss (probabilities clipped to [1e-15, 1] and each row rescaled to sum to 1, as Kaggle does), ROC AUC of class 1 (2
    classes) and the mean of the per-class (one against the rest) ROC AUCs over the classes both present and absent."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    labels = list(range(probabilities.shape[1]))
    predicted = probabilities.argmax(1)
    if metric == "accuracy":
        return float(accuracy_score(targets, predicted))
    if metric in ("f1_macro", "f1_micro"):
        return float(f1_score(targets, predicted, average=metric[3:], labels=labels, zero_division=0))
    if metric == "log_loss":  # rows rescaled to sum to 1 after the clip, as Kaggle does (float32 rows drift)
        clipped = np.clip(probabilities.astype(np.float64), LOG_LOSS_CLIP, 1)
        return float(log_loss(targets, clipped / clipped.sum(1, keepdims=True), labels=labels))
    if len(set(targets.tolist())) < 2:
        raise PipelineError(f"{metric}: the scored images hold a single class; ROC AUC needs both")
    per_class = class_roc_aucs(targets, probabilities)
    return float(per_class[1] if metric == "roc_auc" and len(labels) == 2 else np.nanmean(per_class))


def scores(targets: np.ndarray, probabilities: np.ndarray, metric: str = "accuracy") -> dict:
    """Accuracy, macro-F1, log loss and `metric` (the runs' own), by their names above."""
    return {name: metric_score(name, targets, probabilities)
            for name in dict.fromkeys(("accuracy", "f1_macro", "log_loss", metric))}


def class_roc_aucs(targets: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Each class's ROC AUC against the rest (NaN for a class the images hold none of, or only it)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    return np.array([roc_auc_score(targets == k, probabilities[:, k]) if 0 < (targets == k).sum() < len(targets)
                     else np.nan for k in range(probabilities.shape[1])])
