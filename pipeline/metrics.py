"""The competition metrics of dataset/competition.json, from scikit-learn, over class probabilities."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from pipeline.errors import PipelineError

HIGHER_IS_BETTER = {"accuracy": True, "f1_macro": True, "f1_micro": True, "log_loss": False, "roc_auc": True,
                    "mean_roc_auc": True}


def metric_score(metric: str, targets: np.ndarray, probabilities: np.ndarray) -> float:
    """`metric` of (N, K) class probabilities against class indices: accuracy, macro/micro F1 of the most probable
    class, log loss (probabilities clipped to [1e-15, 1], as scikit-learn and Kaggle do), ROC AUC of class 1 (2
    classes) and the mean of the per-class (one against the rest) ROC AUCs over the classes both present and absent."""
    labels = list(range(probabilities.shape[1]))
    predicted = probabilities.argmax(1)
    if metric == "accuracy":
        return float(accuracy_score(targets, predicted))
    if metric in ("f1_macro", "f1_micro"):
        return float(f1_score(targets, predicted, average=metric[3:], labels=labels, zero_division=0))
    if metric == "log_loss":
        return float(log_loss(targets, np.clip(probabilities, 1e-15, 1), labels=labels))
    if metric == "roc_auc" and len(labels) == 2:
        columns = [1]
    else:
        columns = [k for k in labels if 0 < (targets == k).sum() < len(targets)]
    if not columns or len(set(targets.tolist())) < 2:
        raise PipelineError(f"{metric}: the scored images hold a single class; ROC AUC needs both")
    return float(np.mean([roc_auc_score(targets == k, probabilities[:, k]) for k in columns]))
