"""The Kaggle submission file: written atomically, validated against sampleSubmission.csv, scored locally."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from pipeline.layout import read_id_csv
from pipeline.errors import PipelineError
from pipeline.workspace import atomic_path


def validate_submission(path: Path, sample_csv: Path, classes: list[str], shown_as: Path | None = None) -> None:
    """Same ids in the same order as `sample_csv`, header `id,label`, every label a known class."""
    name = shown_as or path
    submission = read_id_csv(path, need_label=True)
    sample = read_id_csv(sample_csv, need_label=False)
    if list(submission.columns) != ["id", "label"]:
        raise PipelineError(f"{name}: header must be id,label, found {','.join(submission.columns)}")
    if len(submission) != len(sample):
        raise PipelineError(f"{name}: {len(submission)} rows, but {sample_csv} has {len(sample)}")
    differs = (submission["id"].to_numpy() != sample["id"].to_numpy()).nonzero()[0]
    if len(differs):
        row = differs[0]
        raise PipelineError(
            f"{name}: row {row + 2} has id {submission['id'].iat[row]}, {sample_csv.name} has {sample['id'].iat[row]} there"
        )
    unknown = sorted(set(submission["label"]) - set(classes))
    if unknown:
        raise PipelineError(f"{name}: unknown label(s) {', '.join(map(repr, unknown[:5]))}; classes are {', '.join(classes)}")


def write_submission(path: Path, ids: list[str], labels: list[str], sample_csv: Path, classes: list[str]) -> None:
    """Stream `id,label` rows to a temporary file, validate it, and only then replace `path`."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["id", "label"])
            writer.writerows(zip(ids, labels))
        validate_submission(tmp, sample_csv, classes, shown_as=path)


def class_histogram(labels: list[str], classes: list[str]) -> list[tuple[str, int]]:
    """(class, count) for every class, predicted or not."""
    counts = Counter(labels)
    return [(name, counts[name]) for name in classes]


def score_submission(path: Path, solution_csv: Path) -> tuple[float, int]:
    """Accuracy of `path` on the ids that `solution_csv` (id,label) labels; returns (accuracy, count)."""
    submission = read_id_csv(path, need_label=True).set_index("id")["label"]
    solution = read_id_csv(solution_csv, need_label=True).set_index("id")["label"]
    missing = solution.index.difference(submission.index)
    if len(missing):
        raise PipelineError(f"{path}: lacks {len(missing)} id(s) of {solution_csv}, e.g. {', '.join(missing[:5])}")
    return float((submission[solution.index] == solution).mean()), len(solution)
