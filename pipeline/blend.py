"""Scores of class probabilities, and blend weights for an ensemble fitted on its members' out-of-fold (OOF)
predictions: the weights on the simplex that minimise the blend's OOF log loss (scipy's SLSQP)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.config import OPTION
from pipeline.errors import PipelineError
from pipeline.metrics import LOG_LOSS_CLIP, scores
from pipeline.run import CrossValidation


def check_same_folds(members: list[CrossValidation]) -> None:
    """Members of a blend must have split the labeled images alike (the same --folds and --seed), so that each
    image was out of fold for every member's fold model alike and each member's fold scores compare."""
    default = OPTION["seed"].default  # of a plan that does not say
    splits = [(plan["folds"], plan.get("seed", default)) for plan in (member.read_plan() for member in members)]
    for member, (folds, seed) in zip(members[1:], splits[1:]):
        if (folds, seed) != splits[0]:
            raise PipelineError(f"{member.path}: {folds} folds split by --seed {seed}, and {members[0].path}: "
                                f"{splits[0][0]} by --seed {splits[0][1]}; blend cross-validations of the same folds: "
                                f"train one again with --folds {splits[0][0]} --seed {splits[0][1]}")


@dataclass(frozen=True)
class Blend:
    weights: list[float]  # one per member, ≥ 0, summing to 1
    blended: dict  # the weighted blend's OOF scores
    equal: dict  # the equal-weight blend's
    metric: str  # the first member's runs' metric, scored beside accuracy, macro-F1 and log loss


def fit_blend(members: list[CrossValidation]) -> Blend:
    """Blend weights from the members' OOF predictions; they must cover the same labeled images with the same
    labels (cross-validations of one dataset, on the same folds: the same --folds and --seed)."""
    check_same_folds(members)
    oofs, summaries = zip(*(member.gathered() for member in members))
    indices, targets, first = oofs[0]
    for member, (other_indices, other_targets, probabilities) in zip(members[1:], oofs[1:]):
        if not (np.array_equal(other_indices, indices) and np.array_equal(other_targets, targets)
                and probabilities.shape == first.shape):
            raise PipelineError(f"{member.path}: its out-of-fold predictions cover other images, labels or classes "
                                f"than {members[0].path}'s; blend cross-validations of the same labeled set")
    return blend_weights(targets, [probabilities for _, _, probabilities in oofs], summaries[0]["metric"])


def blend_weights(targets: np.ndarray, members: list[np.ndarray], metric: str = "accuracy") -> Blend:
    """The weights on the simplex that minimise the log loss of the blend of `members`' probabilities of the
    images whose classes are `targets` (their OOF predictions, each of the same images and classes)."""
    from scipy.optimize import minimize

    stacked = np.stack(members).astype(np.float64)  # members × images × classes
    rows = np.arange(len(targets))

    def loss(weights: np.ndarray) -> float:
        return float(-np.log(np.clip(np.tensordot(weights, stacked[:, rows, targets], 1), LOG_LOSS_CLIP, 1)).mean())

    equal = np.full(len(members), 1 / len(members))
    fitted = minimize(loss, equal, method="SLSQP", bounds=[(0, 1)] * len(members),
                      constraints={"type": "eq", "fun": lambda w: w.sum() - 1})
    weights = np.clip(fitted.x, 0, 1) / np.clip(fitted.x, 0, 1).sum() if fitted.success else equal
    return Blend([float(w) for w in weights], scores(targets, np.tensordot(weights, stacked, 1), metric),
                 scores(targets, stacked.mean(0), metric), metric)
