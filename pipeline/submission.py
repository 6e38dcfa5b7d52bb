"""The Kaggle submission file: written atomically, validated against the sample submission, scored locally."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pandas as pd

from pipeline.competition import DESCRIPTION, read_competition
from pipeline.layout import read_id_csv
from pipeline.errors import PipelineError
from pipeline.workspace import atomic_path


def validate_submission(path: Path, root: Path, classes: list[str], shown_as: Path | None = None) -> None:
    """The header and ids, in order, of the sample submission of the competition in `root`; every label a class, or
    (submissions of probabilities) every value a number from 0 to 1."""
    name, c = shown_as or path, read_competition(root)
    sample_csv = root / c.sample_submission
    header = [c.submission_id, *c.submission_columns]
    sample = read_id_csv(sample_csv, (c.submission_id,))
    if list(sample.columns) != header:
        raise PipelineError(f"{root / DESCRIPTION}: describes the submission as {','.join(header)}, but {sample_csv} "
                            f"has {','.join(sample.columns)}; fix the description (or fetch again with --force)")
    submission = read_id_csv(path, tuple(header))
    if list(submission.columns) != header:
        raise PipelineError(f"{name}: header must be {','.join(header)}, found {','.join(submission.columns)}")
    if len(submission) != len(sample):
        raise PipelineError(f"{name}: {len(submission)} rows, but {sample_csv} has {len(sample)}")
    ids, sample_ids = submission[c.submission_id].to_numpy(), sample[c.submission_id].to_numpy()
    differs = (ids != sample_ids).nonzero()[0]
    if len(differs):
        row = differs[0]
        raise PipelineError(f"{name}: row {row + 2} has id {ids[row]}, {sample_csv.name} has {sample_ids[row]} there")
    if c.submission_kind != "label":
        values = submission[list(c.submission_columns)].apply(pd.to_numeric, errors="coerce").to_numpy()
        if not ((values >= 0) & (values <= 1)).all():  # NaN (not a number) fails too
            raise PipelineError(f"{name}: the {', '.join(c.submission_columns[:5])} column(s) must hold probabilities "
                                "(numbers from 0 to 1)")
        return
    unknown = sorted(set(submission[c.submission_columns[0]]) - set(classes))
    if unknown:
        raise PipelineError(f"{name}: unknown label(s) {', '.join(map(repr, unknown[:5]))}; classes are {', '.join(classes)}")


def write_submission(path: Path, ids: list[str], labels: list[str], root: Path, classes: list[str]) -> None:
    """Stream a row per id (header: the sample submission's) to a temporary file, validate it, and only then
    replace `path`."""
    c = read_competition(root)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow([c.submission_id, *c.submission_columns])
            writer.writerows(zip(ids, labels))
        validate_submission(tmp, root, classes, shown_as=path)


def class_histogram(labels: list[str], classes: list[str]) -> list[tuple[str, int]]:
    """(class, count) for every class, predicted or not."""
    counts = Counter(labels)
    return [(name, counts[name]) for name in classes]


def score_submission(path: Path, solution_csv: Path, root: Path) -> tuple[float, int]:
    """Accuracy of `path` on the ids that `solution_csv` (shaped like the submission) labels; returns (accuracy,
    count)."""
    c = read_competition(root)
    columns = (c.submission_id, c.submission_columns[0])
    submission = read_id_csv(path, columns).set_index(c.submission_id)[columns[1]]
    solution = read_id_csv(solution_csv, columns).set_index(c.submission_id)[columns[1]]
    missing = solution.index.difference(submission.index)
    if len(missing):
        raise PipelineError(f"{path}: lacks {len(missing)} id(s) of {solution_csv}, e.g. {', '.join(missing[:5])}")
    return float((submission[solution.index] == solution).mean()), len(solution)
