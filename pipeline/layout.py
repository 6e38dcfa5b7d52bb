"""The competition layout on disk: `train/<id>.png`, `test/<id>.png`, trainLabels.csv, sampleSubmission.csv."""
from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
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
    return (0, int(image_id), "") if image_id.isascii() and image_id.isdigit() else (1, 0, image_id)


def _examples(names: set[str] | list[str], suffix: str = "") -> str:
    ordered = sorted(names, key=id_sort_key)
    shown = ", ".join(f"{n}{suffix}" for n in ordered[:SHOWN])
    return shown + (f" and {len(ordered) - SHOWN} more" if len(ordered) > SHOWN else "")


def read_id_csv(path: Path, need_label: bool, unique: bool = True) -> pd.DataFrame:
    """Read an `id,label` CSV as strings, refusing missing columns, empty files and (`unique`) duplicate ids."""
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
    if unique and len(duplicated):
        raise PipelineError(f"{path}: {len(duplicated)} duplicate id(s): {_examples(set(duplicated))}")
    return frame


def png_ids(folder: Path) -> set[str]:
    if folder.exists() and not folder.is_dir():
        raise PipelineError(f"{folder}: a file where a folder of PNGs is expected; fetch the competition again")
    if not folder.is_dir():
        raise PipelineError(f"{folder}: folder not found; run `pipeline fetch` first")
    with os.scandir(folder) as entries:
        return {e.name[:-4] for e in entries if e.name.endswith(".png") and e.is_file()}


def train_problems(root: Path) -> tuple[pd.DataFrame, list[str], list[str]]:
    """trainLabels.csv without its unusable rows (labels normalised: `normalised_labels`), every problem
    found, one line each: duplicate ids and empty labels (those rows dropped), ids without an image (dropped),
    images without an id; and the notes of labels read otherwise than written."""
    csv_path = root / TRAIN_LABELS
    labels = read_id_csv(csv_path, need_label=True, unique=False)
    labels["label"], notes = normalised_labels(labels["label"])
    images = png_ids(root / "train")
    problems = []
    counts = labels["id"].value_counts()
    for image_id in sorted(counts[counts > 1].index, key=id_sort_key):
        problems.append(f"{TRAIN_LABELS}: id {image_id} appears {counts[image_id]} times")
    blank = labels["label"] == ""
    problems += [f"{TRAIN_LABELS}: id {image_id} has no label" for image_id in labels["id"][blank]]
    missing = set(labels["id"]) - images
    problems += [f"train/{image_id}.png: missing (listed in {TRAIN_LABELS})" for image_id in sorted(missing, key=id_sort_key)]
    extra = images - set(labels["id"])
    problems += [f"train/{image_id}.png: not listed in {TRAIN_LABELS}" for image_id in sorted(extra, key=id_sort_key)]
    usable = ~labels["id"].isin(set(counts[counts > 1].index) | missing) & ~blank
    return labels[usable], problems, notes


def plain_text(label: str) -> str:
    """A label as one reads it: Unicode compatibility forms folded (full-width ｄｏｇ is dog), invisible format
    characters (zero-width spaces, BOMs) dropped, surrounding spaces stripped."""
    folded = unicodedata.normalize("NFKC", label)
    return "".join(c for c in folded if unicodedata.category(c) != "Cf").strip()


CASE_SLIP_SHARE = 0.1  # spellings that differ only in case are one class when the rarer ones hold less of its rows


def normalised_labels(labels: pd.Series) -> tuple[pd.Series, list[str]]:
    """Labels without surrounding spaces (as ids), and spellings that differ only in case read as the most frequent
    one when the others are slips (together under CASE_SLIP_SHARE of their rows: 'Cat' in 3 rows beside 'cat' in
    5,000); comparably frequent ones ('a' and 'A' in a set of letters) stay classes of their own. Also a note for
    each spelling read otherwise than written."""
    stripped = labels.map(plain_text)
    counts = stripped[stripped != ""].value_counts()
    groups: dict[str, list[str]] = {}
    for spelling in sorted(counts.index, key=lambda name: (-counts[name], name)):
        groups.setdefault(spelling.casefold(), []).append(spelling)
    canonical = {}
    for main, *others in groups.values():
        slips = sum(counts[name] for name in others) < CASE_SLIP_SHARE * (counts[main] + sum(counts[n] for n in others))
        canonical |= {name: main if slips else name for name in (main, *others)}
    read = stripped.map(lambda name: canonical.get(name, name))
    changed = labels[(labels != read) & (read != "")].value_counts()
    notes = [f"{written!r} as {canonical[plain_text(written)]!r} ({n} row{'s' * (n > 1)})"
             for written, n in sorted(changed.items())]
    return read, notes


def problems_message(where: Path, problems: list[str], what: str, advice: str) -> str:
    shown = "; ".join(problems[:SHOWN]) + (f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else "")
    return f"{where}: {len(problems)} problem(s) in the {what}: {shown}. {advice}"


def check_test(root: Path) -> list[str]:
    """Every id of sampleSubmission.csv has its PNG; returns the ids in the file's order."""
    sample = read_id_csv(root / SAMPLE_SUBMISSION, need_label=False)
    missing = set(sample["id"]) - png_ids(root / "test")
    if missing:
        raise PipelineError(f"{root / 'test'}: {len(missing)} id(s) of {SAMPLE_SUBMISSION} have no image: "
                            f"{_examples(missing, '.png')}")
    return sample["id"].tolist()


@dataclass(frozen=True)
class LabeledImages:
    image_dir: Path
    ids: list[str]
    targets: np.ndarray  # int64 class index per id
    classes: list[str]  # sorted label names; index = class number
    problems: list[str]  # rows left out and files not used (see `train_problems`)
    notes: list[str] = field(default_factory=list)  # labels read otherwise than written (`normalised_labels`)


def load_train_set(root: Path) -> LabeledImages:
    """The usable labeled training images in numeric id order, classes in sorted order, and the
    problems found on the way (the caller decides whether they stop it)."""
    labels, problems, notes = train_problems(root)
    if labels.empty:
        raise PipelineError(problems_message(root, problems, "training data", "No usable labeled image is left."))
    labels = labels.iloc[sorted(range(len(labels)), key=lambda i: id_sort_key(labels["id"].iat[i]))]
    classes = sorted(labels["label"].unique())
    if len(classes) < 2:
        raise PipelineError(f"{root / TRAIN_LABELS}: every usable row has the label {classes[0]!r}; a classifier "
                            "needs images of at least 2 classes")
    index = {name: i for i, name in enumerate(classes)}
    targets = labels["label"].map(index).to_numpy(dtype=np.int64)
    return LabeledImages(root / "train", labels["id"].tolist(), targets, classes, problems, notes)


def dataset_classes(root: Path) -> list[str] | None:
    """The sorted class names of trainLabels.csv (read as training reads them), None without that file."""
    if not (root / TRAIN_LABELS).is_file():
        return None
    labels = normalised_labels(read_id_csv(root / TRAIN_LABELS, need_label=True, unique=False)["label"])[0]
    return sorted(set(labels[labels != ""]))


def check_train(root: Path) -> LabeledImages:
    """The labeled images of a layout that must be whole (a fetched competition): any problem is an error."""
    data = load_train_set(root)
    if data.problems:
        raise PipelineError(problems_message(root, data.problems, "training data", "Fix them, or fetch again."))
    return data
