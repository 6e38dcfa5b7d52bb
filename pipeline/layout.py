"""The competition layout on disk: `train/<id>.png`, `test/<id>.png`, trainLabels.csv, sampleSubmission.csv."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError

TRAIN_LABELS = "trainLabels.csv"
SAMPLE_SUBMISSION = "sampleSubmission.csv"
SOLUTION = "solution.csv"
SHOWN = 5  # how many offending names an error message lists


def id_sort_key(image_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order (2 before 10), any others after them by name."""
    return (0, int(image_id), "") if image_id.isdigit() else (1, 0, image_id)


def _examples(names: set[str] | list[str], suffix: str = "") -> str:
    ordered = sorted(names, key=id_sort_key)
    shown = ", ".join(f"{n}{suffix}" for n in ordered[:SHOWN])
    return shown + (f" and {len(ordered) - SHOWN} more" if len(ordered) > SHOWN else "")


def read_id_csv(path: Path, need_label: bool) -> pd.DataFrame:
    """Read an `id,label` CSV as strings, refusing missing columns, empty files and duplicate ids."""
    if not path.is_file():
        raise PipelineError(f"{path}: not found; run `pipeline fetch` first")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise PipelineError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None
    wanted = ["id", "label"] if need_label else ["id"]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise PipelineError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(frame.columns)})")
    if frame.empty:
        raise PipelineError(f"{path}: has a header but no rows")
    frame["id"] = frame["id"].str.strip()
    duplicated = frame["id"][frame["id"].duplicated()]
    if len(duplicated):
        raise PipelineError(f"{path}: {len(duplicated)} duplicate id(s): {_examples(set(duplicated))}")
    return frame


def png_ids(folder: Path) -> set[str]:
    if not folder.is_dir():
        raise PipelineError(f"{folder}: folder not found; run `pipeline fetch` first")
    with os.scandir(folder) as entries:
        return {e.name[:-4] for e in entries if e.name.endswith(".png") and e.is_file()}


def _check_ids(csv_path: Path, ids: pd.Series, folder: Path, images: set[str], extra_allowed: bool) -> None:
    missing = set(ids) - images
    if missing:
        raise PipelineError(
            f"{folder}: {len(missing)} id(s) of {csv_path.name} have no image: {_examples(missing, '.png')}"
        )
    extra = images - set(ids)
    if extra and not extra_allowed:
        raise PipelineError(
            f"{folder}: {len(extra)} image(s) are not listed in {csv_path.name}: {_examples(extra, '.png')}"
        )


def check_train(root: Path) -> pd.DataFrame:
    """Every id of trainLabels.csv has its PNG and every PNG its id; returns the labels."""
    labels = read_id_csv(root / TRAIN_LABELS, need_label=True)
    _check_ids(root / TRAIN_LABELS, labels["id"], root / "train", png_ids(root / "train"), extra_allowed=False)
    return labels


def check_test(root: Path) -> list[str]:
    """Every id of sampleSubmission.csv has its PNG; returns the ids in the file's order."""
    sample = read_id_csv(root / SAMPLE_SUBMISSION, need_label=False)
    _check_ids(root / SAMPLE_SUBMISSION, sample["id"], root / "test", png_ids(root / "test"), extra_allowed=True)
    return sample["id"].tolist()


@dataclass(frozen=True)
class LabeledImages:
    image_dir: Path
    ids: list[str]
    targets: np.ndarray  # int64 class index per id
    classes: list[str]  # sorted label names; index = class number


def load_train_set(root: Path) -> LabeledImages:
    """The labeled training images in numeric id order, classes in sorted order."""
    labels = check_train(root)
    labels = labels.iloc[sorted(range(len(labels)), key=lambda i: id_sort_key(labels["id"].iat[i]))]
    classes = sorted(labels["label"].unique())
    index = {name: i for i, name in enumerate(classes)}
    targets = labels["label"].map(index).to_numpy(dtype=np.int64)
    return LabeledImages(root / "train", labels["id"].tolist(), targets, classes)
