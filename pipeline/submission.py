"""The Kaggle submission file, shaped like the sample submission: its values from class probabilities, written
atomically, validated, and scored locally by the described metric."""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.competition import (BINARY_SPELLINGS, DESCRIPTION, USAGE, Competition, read_competition, read_csv_text,
                                  separator_hint, submitted_classes)
from pipeline.errors import PipelineError, listed
from pipeline.layout import dataset_classes, integer_code, integer_text, plain_text, read_id_csv, read_sample
from pipeline.metrics import LABEL_METRICS, METRIC_LABELS, check_metric, metric_score
from pipeline.workspace import atomic_path


def validate_submission(path: Path, root: Path, classes: list[str], shown_as: Path | None = None) -> None:
    """The header and ids, in order, of the sample submission of the competition in `root`; every label a class, or
    (submissions of probabilities) every value a number from 0 to 1."""
    name, c = shown_as or path, read_competition(root)
    sample_csv = root / c.sample_submission
    header = [c.submission_id, *c.submission_columns]
    sample = read_sample(root, c)
    found = list(read_csv_text(path).columns) if path.is_file() else header  # else read_id_csv says what it is
    if found != header:
        raise PipelineError(f"{name}: header must be {','.join(header)}, found {','.join(map(str, found))}"
                            + (f"; {separator_hint(path)}" if separator_hint(path) else ""))
    submission = read_id_csv(path, tuple(header))
    if len(submission) != len(sample):
        raise PipelineError(f"{name}: {len(submission)} rows, but {sample_csv} has {len(sample)}; write a row for each "
                            f"of its ids, once, in its order")
    ids, sample_ids = submission[c.submission_id].to_numpy(), sample[c.submission_id].to_numpy()
    differs = (ids != sample_ids).nonzero()[0]
    if len(differs):
        row = differs[0]
        raise PipelineError(f"{name}: row {row + 2} has id {ids[row]}, {sample_csv.name} has {sample_ids[row]} there; "
                            "write the rows in the sample submission's order")
    if c.submission_kind != "label":
        values = submission[list(c.submission_columns)].apply(pd.to_numeric, errors="coerce").to_numpy()
        rows, columns = np.nonzero(~((values >= 0) & (values <= 1)))  # NaN (not a number) too
        if len(rows):
            cell = submission[list(c.submission_columns)].iat[rows[0], columns[0]]
            raise PipelineError(f"{name}: row {rows[0] + 2} holds {cell!r} in {c.submission_columns[columns[0]]}; its "
                                "class columns must hold probabilities (numbers from 0 to 1)")
        return
    unknown = sorted(set(submission[c.submission_columns[0]]) - set(classes))
    if unknown:
        empty = " (an empty cell)" if "" in unknown else ""
        raise PipelineError(f"{name}: unknown label(s) {', '.join(map(repr, unknown[:5]))}{empty}; classes are "
                            f"{listed(classes)}")


LOG_LOSS_FLOOR = 1e-3  # a log-loss submission's probabilities are raised to this: a confident miss costs at most ln 1000


def submission_values(probabilities: np.ndarray, classes: list[str], root: Path) -> list[list[str]]:
    """The submission's values for each row of `probabilities` (a column per class of `classes`): the most probable
    class, the probability of class 1, or a probability per class of the submission's columns (each at least
    LOG_LOSS_FLOOR when scored by log loss; rows summing to 1)."""
    c = read_competition(root)
    if c.submission_kind == "label":
        return [[classes[i]] for i in probabilities.argmax(1)]
    own = dataset_classes(root) == sorted(classes)  # the model is this competition's: its description is what is wrong
    wanted = submitted_classes(c, classes, root, "the model's classes (this dataset's labels) are" if own else
                               "the model's classes are", f"fix submission_kind or submission_columns in "
                               f"{root / DESCRIPTION}" if own else "predict with a model trained on this competition")
    values = probabilities[:, [classes.index(name) for name in wanted]].astype(np.float64)
    if c.submission_kind == "probabilities":
        values = np.maximum(values, LOG_LOSS_FLOOR) if c.metric == "log_loss" else values
        values /= values.sum(1, keepdims=True)
    return [[f"{v:.6f}" for v in row] for row in values]


def write_submission(path: Path, ids: list[str], values: list[list[str]], root: Path, classes: list[str]) -> None:
    """Stream a row per id (header: the sample submission's; `values` from `submission_values`) to a temporary
    file, validate it, and only then replace `path`."""
    c = read_competition(root)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow([c.submission_id, *c.submission_columns])
            writer.writerows([image_id, *row] for image_id, row in zip(ids, values))
        validate_submission(tmp, root, classes, shown_as=path)


def class_histogram(labels: list[str], classes: list[str]) -> list[tuple[str, int]]:
    """(class, count) for every class, predicted or not."""
    counts = Counter(labels)
    return [(name, counts[name]) for name in classes]


def scoring_metric(root: Path, metric: str | None) -> str:
    """The metric that scores the submission: `metric` (--metric), else the described one; a class per row cannot be
    scored by a metric of probabilities."""
    c = read_competition(root)
    if metric is None:
        return c.metric
    check_metric(metric)
    if c.submission_kind == "label" and metric not in LABEL_METRICS:
        raise PipelineError(f"--metric {metric} scores probabilities, but {c.sample_submission} takes a class per row; "
                            f"score it by {', '.join(LABEL_METRICS)}")
    return metric


LEADERBOARDS = ("Public", "Private")  # the values of a solution's USAGE column, beside Ignored


@dataclass(frozen=True)
class Scored:
    metric: str
    score: float  # on the solution's rows but those its Usage column marks Ignored
    count: int
    # Public / Private: (score, or None where one class leaves ROC AUC undefined; rows)
    leaderboards: dict[str, tuple[float | None, int]] = field(default_factory=dict)
    ignored: int = 0  # rows marked Ignored, left out
    # by part ("" the whole, Public, Private): the classes mean ROC AUC leaves out, absent (or alone) in its rows
    left_out: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def line(self) -> str:
        """The score in words: `accuracy on the scored ids: 0.9000`, then its parts and what it leaves out."""
        parts = [f"{name} {score:.4f} on {rows}{self._without(name)}" if score is not None else
                 f"{name} not scored ({rows} rows of one class)" for name, (score, rows) in self.leaderboards.items()]
        parts += [f"{self.ignored} Ignored row(s) left out"] if self.ignored else []
        parts += [f"mean over the classes{self._without('')}"] if self.left_out.get("") else []
        return (f"{METRIC_LABELS[self.metric]} on the scored ids: {self.score:.4f}"
                + (f" ({self.count} ids; {'; '.join(parts)})" if parts else ""))

    def _without(self, part: str) -> str:
        left = self.left_out.get(part, ())
        return f" without {listed(left, 5)} (absent or alone there)" if left else ""


def score_submission(path: Path, solution_csv: Path, root: Path, metric: str | None = None) -> Scored:
    """`metric` (default: the described one) of `path` on the ids of `solution_csv` (a Kaggle solution's Ignored rows
    left out, its Public and Private rows also scored apart). The solution holds the submission's columns (classes,
    0/1, or one-hot), or one column of class names."""
    c = read_competition(root)
    metric = scoring_metric(root, metric)
    submission = read_id_csv(path, (c.submission_id, *c.submission_columns)).set_index(c.submission_id)
    solution = read_id_csv(solution_csv, (c.submission_id,)).set_index(c.submission_id)
    missing = solution.index.difference(submission.index)
    if len(missing):
        raise PipelineError(f"{path}: lacks {len(missing)} id(s) of {solution_csv}, e.g. {', '.join(missing[:5])}")
    usage, solution = solution_usage(solution, solution_csv, c)
    ignored = 0
    if usage is not None:  # Ignored rows are neither scored nor read (Kaggle's often have no label)
        kept = (usage != "Ignored").to_numpy()
        solution, usage, ignored = solution[kept], usage[kept], int((~kept).sum())
    targets, probabilities = _scored_rows(c, root, solution, submission.loc[solution.index], solution_csv)
    names = _submitted_classes(c) if c.submission_kind != "label" else []
    leaderboards, left_out = {}, {"": _left_out(metric, targets, names)}
    for name in LEADERBOARDS if usage is not None else ():
        rows = (usage == name).to_numpy()
        if rows.any():  # None: a leaderboard of one class, which ROC AUC cannot score
            one_class = metric in ("roc_auc", "mean_roc_auc") and len(set(targets[rows].tolist())) < 2
            leaderboards[name] = (None if one_class else metric_score(metric, targets[rows], probabilities[rows]),
                                  int(rows.sum()))
            left_out[name] = () if one_class else _left_out(metric, targets[rows], names)
    return Scored(metric, metric_score(metric, targets, probabilities), len(solution), leaderboards, ignored,
                  {part: classes for part, classes in left_out.items() if classes})


def _left_out(metric: str, targets: np.ndarray, names: list[str]) -> tuple[str, ...]:
    """The classes mean ROC AUC leaves out of its mean over these rows (none of them, or all of them, of the class:
    its ROC AUC is undefined)."""
    if metric != "mean_roc_auc":
        return ()
    counts = np.bincount(targets, minlength=len(names))
    return tuple(name for name, count in zip(names, counts) if count in (0, len(targets)))


def _scored_rows(c: Competition, root: Path, solution: pd.DataFrame, submitted: pd.DataFrame,
                 solution_csv: Path) -> tuple[np.ndarray, np.ndarray]:
    """Each solution row's true class index and the submission's probabilities for it (a predicted label: one-hot)."""
    if c.submission_kind == "label":
        column = c.submission_columns[0]
        truth = solution_labels(solution[column], known_labels(root, solution[column]), solution_csv)
        names = sorted(set(truth) | set(submitted[column]))
        predicted = np.eye(len(names))[submitted[column].map(names.index).to_numpy()]
        return truth.map(names.index).to_numpy(), predicted
    values = submitted[list(c.submission_columns)].astype(float).to_numpy()
    probabilities = np.column_stack([1 - values[:, 0], values[:, 0]]) if c.submission_kind == "probability" \
        else values / values.sum(1, keepdims=True)
    return _solution_targets(solution, c, _submitted_classes(c), solution_csv), probabilities


def solution_usage(solution: pd.DataFrame, path: Path, c: Competition) -> tuple[pd.Series | None, pd.DataFrame]:
    """A Kaggle solution's Usage column (Public, Private or Ignored per row, in any case; None when it has none, or
    when a class or the label column has that name), and the solution without it."""
    column = next((name for name in solution.columns if str(name).strip().casefold() == USAGE.casefold()
                   and name not in c.submission_columns), None)
    if column is None:
        return None, solution
    spelled = {name.casefold(): name for name in (*LEADERBOARDS, "Ignored")}
    usage = solution[column].map(lambda value: spelled.get(plain_text(value).casefold(), plain_text(value)))
    odd = sorted(set(usage) - set(spelled.values()))
    if odd:
        raise PipelineError(f"{path}: its {column} column holds {listed(odd[:5])}; a Kaggle solution marks each row "
                            "Public, Private or Ignored: fix those rows")
    if (usage == "Ignored").all():
        raise PipelineError(f"{path}: its {column} column marks every row Ignored, so no row is scored; score with the "
                            "solution's Public or Private rows")
    return usage, solution.drop(columns=column)


def check_solution(solution_csv: Path, root: Path, metric: str) -> list[str]:
    """A solution file `score_submission` can read (its columns and classes) and score by `metric` (ROC AUC needs
    two classes); returns its ids."""
    c = read_competition(root)
    wanted = [c.submission_id, *(c.submission_columns if c.submission_kind == "label" else [])]
    header = list(read_csv_text(solution_csv).columns) if solution_csv.is_file() else wanted
    if any(column not in header for column in wanted):
        raise PipelineError(f"{solution_csv}: its header names {listed(header, 6)}, not the sample submission's "
                            f"{listed(wanted)}; {separator_hint(solution_csv) or 'rename its columns as the sample names them'}")
    solution = read_id_csv(solution_csv, (c.submission_id,)).set_index(c.submission_id)
    ids = solution.index.tolist()
    usage, solution = solution_usage(solution, solution_csv, c)
    if usage is not None:  # the rows scored
        solution = solution[(usage != "Ignored").to_numpy()]
    if c.submission_kind == "label":
        column = c.submission_columns[0]
        present = set(solution_labels(solution[column], known_labels(root, solution[column]), solution_csv))
    else:
        classes = _submitted_classes(c)
        present = {classes[k] for k in _solution_targets(solution, c, classes, solution_csv)}
    if metric in ("roc_auc", "mean_roc_auc") and len(present) == 1:
        raise PipelineError(f"{solution_csv}: every row is of class {listed(sorted(present))}, and {METRIC_LABELS[metric]} "
                            "needs two classes to rank; score with a solution of two classes or more, or pass --metric accuracy")
    return ids


def known_labels(root: Path, truth: pd.Series) -> list[str]:
    """The labels a solution may hold: the training labels' classes, or (no training labels to read) its own."""
    return dataset_classes(root) or sorted(set(truth.map(plain_text)) - {""})


def solution_labels(truth: pd.Series, classes: list[str], path: Path) -> pd.Series:
    """A solution's labels read as training reads its labels (surrounding spaces, invisible characters and Unicode
    compatibility forms dropped; a spelling that differs from one class in case only is that class, a code 2.0 or 02
    the class 2); a blank label, or
    one not among `classes`, is an error naming them."""
    blank = truth.index[truth.map(plain_text) == ""]
    if len(blank):
        raise PipelineError(f"{path}: {len(blank)} row(s) have no {truth.name} (e.g. id {blank[0]}); every scored id "
                            "needs its true label: fix them, or drop those rows")
    known, by_case = set(classes), {}
    for name in classes:
        by_case.setdefault(name.casefold(), []).append(name)

    def read_label(label: str) -> str | None:
        text = plain_text(label)
        if text not in known and integer_code(text) and integer_text(text) in known:
            return integer_text(text)  # a class code spelled 2.0 or 02, as training reads it
        same_but_case = by_case.get(text.casefold(), [])
        return text if text in known else same_but_case[0] if len(same_but_case) == 1 else None

    read = truth.map(read_label)
    unknown = sorted(set(truth[read.isna()]))
    if unknown:
        raise PipelineError(f"{path}: its {truth.name} column holds {', '.join(map(repr, unknown[:5]))}, not among the "
                            f"classes ({listed(classes, 10)}); fix those labels, "
                            "or score with this competition's solution")
    return read


def _submitted_classes(c: Competition) -> list[str]:
    """The classes a submission of probabilities scores, in its columns' order: 0 and 1 for the probability of 1."""
    return ["0", "1"] if c.submission_kind == "probability" else list(c.submission_columns)


def _solution_targets(solution: pd.DataFrame, c: Competition, classes: list[str], path: Path) -> np.ndarray:
    """The class index of each solution row: from the submission's columns (0/1, one-hot), else from its one other
    column of class names."""
    if c.submission_kind == "probability":  # its 0/1 labels as the training labels may spell them (False/True)
        solution = solution.apply(lambda column: column.map(lambda v: BINARY_SPELLINGS.get(plain_text(v).casefold(), v)))
    if set(c.submission_columns) <= set(solution.columns):
        cells = solution[list(c.submission_columns)]
        marks = cells.apply(pd.to_numeric, errors="coerce").to_numpy()
        rows, columns = np.nonzero(~np.isin(marks, (0, 1)))  # NaN (not a number) too
        if len(rows):
            shown = "; ".join(f"id {solution.index[r]} holds {cells.iat[r, k]!r} in {c.submission_columns[k]}"
                              for r, k in zip(rows[:3], columns[:3]))
            raise PipelineError(f"{path}: {shown}{f'; and {len(rows) - 3} more' if len(rows) > 3 else ''}; its class "
                                f"columns must hold 0 or 1, as submission_kind {c.submission_kind!r} of {DESCRIPTION} "
                                "scores them; fix the solution, or the description if the competition's classes are "
                                "others")
        if c.submission_kind == "probability":
            return marks[:, 0].astype(np.int64)
        marked = marks.sum(1)
        odd = [f"{image_id} ({'no class' if count == 0 else f'{int(count)} classes'})"
               for image_id, count in zip(solution.index, marked) if count != 1]
        if odd:
            raise PipelineError(f"{path}: a one-hot row marks one class, but {len(odd)} row(s) do not: "
                                f"{', '.join(odd[:5])}; fix those rows")
        return marks.argmax(1)
    names = list(solution.columns)
    if len(names) != 1:
        missing = [name for name in c.submission_columns if name not in names]
        others = [name for name in names if name not in c.submission_columns]
        raise PipelineError(f"{path}: expected the submission's columns ({listed(c.submission_columns, 5)}) or one "
                            f"column of class names; it lacks {listed(missing, 5)}"
                            + (f" and has {listed(others, 5)}" if others else "") + "; fix its header")
    if c.label_kind == "integers":  # codes spelled as training labels may spell them: 2.0 or 02 for 2
        solution = solution.assign(**{names[0]: solution[names[0]].map(
            lambda v: integer_text(v) if v not in classes and integer_code(v) else v)})
    unknown = sorted(set(solution[names[0]]) - set(classes))
    if unknown:
        raise PipelineError(f"{path}: its {names[0]} column names {', '.join(map(repr, unknown[:5]))}, not among the "
                            f"submission's classes ({listed(classes, 10)})")
    return solution[names[0]].map({name: k for k, name in enumerate(classes)}).to_numpy(dtype=np.int64)
