"""The competition's description, `dataset/competition.json`: where its images and labels are, how an id names its
image file, what the submission holds and the metric. `pipeline fetch` infers it from the files (saying which
choices it made), every stage reads it, and the user may edit it. A dataset/ without one has CIFAR-10's shape: the
defaults below."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError, listed
from pipeline.images import IMAGE_SUFFIXES, MASK_FOLDERS, class_folder_listing, header_sample, named_for
from pipeline.metrics import LABEL_METRICS, METRICS
from pipeline.workspace import read_json, write_text_atomic

DESCRIPTION = "competition.json"
TRAIN_LABELS = "trainLabels.csv"  # CIFAR-10's names, also those of the offline sample and converted datasets
SAMPLE_SUBMISSION = "sampleSubmission.csv"
SOLUTION = "solution.csv"  # the held-out labels of a locally made competition: not one of its inputs
USAGE = "Usage"  # a Kaggle solution's column: each row's leaderboard (Public, Private) or Ignored
LABEL_KINDS = ("names", "integers", "binary", "one-hot", "folders")
SUBMISSION_KINDS = ("label", "probability", "probabilities")
LABEL_NAMES = ("label", "labels", "target", "class", "class_id", "category", "category_id", "label_id")  # usual names
EDIT = f"edit dataset/{DESCRIPTION} to change it"
LONE_CLASSES_FROM = 20  # labeled images from which a class per image reads as a wrong label column
LARGEST_SQUARE = 256  # the side inferred for images of varied sizes, at most


@dataclass(frozen=True)
class Competition:
    labels_csv: str = TRAIN_LABELS
    id_column: str = "id"
    label_columns: tuple[str, ...] = ("label",)  # one column, or (one-hot) a 0/1 column per class
    label_kind: str = "names"  # names, integers, binary (0/1), one-hot, or folders (train_images/<class>/<file>,
    # no labels_csv: the ids are `<class>/<file>`)
    train_images: str = "train"  # folders under dataset/
    test_images: str = "test"
    image_suffix: str = ".png"  # appended to an id to name its image file ("" where the ids are file names)
    image_size: int | None = None  # decode every image to this square (shorter side resized, centre crop); None:
    # the images' own size, one for the set
    sample_submission: str = SAMPLE_SUBMISSION
    submission_id: str = "id"
    submission_columns: tuple[str, ...] = ("label",)
    submission_kind: str = "label"  # label: a class per row; probability: of class 1; probabilities: one per class
    metric: str = "accuracy"

    def image_file(self, image_id: str) -> str:
        return image_id + self.image_suffix


FIELDS = {f.name: f for f in fields(Competition)}
LIST_FIELDS = ("label_columns", "submission_columns")
PATH_FIELDS = ("labels_csv", "train_images", "test_images", "sample_submission")
CHOICES = {"label_kind": LABEL_KINDS, "submission_kind": SUBMISSION_KINDS, "metric": METRICS}


def read_competition(root: Path) -> Competition:
    """`root`'s description, checked; CIFAR-10's shape where there is none."""
    path = root / DESCRIPTION
    if not path.is_file():
        return Competition()
    try:
        given = read_json(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise PipelineError(f"{path}: not readable JSON ({e}); fix it, or fetch again with --force") from None
    if not isinstance(given, dict):
        raise PipelineError(f"{path}: expected a JSON object of the competition's fields; fix it, or fetch again")
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        raise PipelineError(f"{path}: unknown field(s) {', '.join(map(repr, unknown))}; the fields are {', '.join(FIELDS)}")
    for name, value in given.items():
        _check_field(path, name, value)
    competition = Competition(**{k: tuple(v) if k in LIST_FIELDS else v for k, v in given.items()})
    _check_counts(path, competition)
    return competition


def _check_field(path: Path, name: str, value: object) -> None:
    if name == "image_size":
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 8 <= value <= 1024):
            raise PipelineError(f"{path}: image_size must be a whole number of pixels from 8 to 1024, or null (the "
                                f"images' own size), got {value!r}")
        return
    if name in LIST_FIELDS:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise PipelineError(f"{path}: {name} must be a non-empty list of column names, got {value!r}")
        return
    if not isinstance(value, str):
        raise PipelineError(f"{path}: {name} must be a string, got {value!r}")
    if name in CHOICES and value not in CHOICES[name]:
        raise PipelineError(f"{path}: {name} {value!r} is not one of {', '.join(map(repr, CHOICES[name]))}")
    if name == "image_suffix" and value and value.lower() not in IMAGE_SUFFIXES:
        raise PipelineError(f"{path}: image_suffix {value!r} is not one of {', '.join(IMAGE_SUFFIXES)} (any case), "
                            "nor '' (the ids are file names)")
    parts = PurePosixPath(value).parts
    if name in PATH_FIELDS and (value or name != "labels_csv") and (not parts or PurePosixPath(value).is_absolute() or ".." in parts):
        raise PipelineError(f"{path}: {name} {value!r} must name a file or folder inside dataset/ (a relative path)")
    if name in ("labels_csv", "sample_submission") and parts and parts[-1].lower() == SOLUTION:
        raise PipelineError(f"{path}: {name} names {value}, the held-out labels of a locally made competition "
                            f"(make_competition.py, a rehearsal), which no stage reads; name the competition's "
                            f"{'training labels' if name == 'labels_csv' else 'sample submission (the test ids)'}")


def _check_counts(path: Path, c: Competition) -> None:
    if c.labels_csv and PurePosixPath(c.sample_submission) == PurePosixPath(c.labels_csv):
        raise PipelineError(f"{path}: sample_submission and labels_csv both name {c.sample_submission}; the training "
                            "labels and the sample submission (the test ids) are two files: fix the field that is wrong")
    if (c.label_kind == "folders") != (c.labels_csv == ""):
        raise PipelineError(f"{path}: labels_csv {c.labels_csv!r} with label_kind {c.label_kind!r}; the labels are "
                            "a CSV's, or (label_kind 'folders', labels_csv \"\") the names of the class folders")
    if c.label_kind != "folders" and c.id_column in c.label_columns:
        raise PipelineError(f"{path}: label_columns names {c.id_column!r}, the id column (id_column): each image would "
                            "be a class of its own; name the column of labels")
    one_hot = c.label_kind == "one-hot"
    if one_hot != (len(c.label_columns) > 1):
        raise PipelineError(f"{path}: label_kind {c.label_kind!r} with {len(c.label_columns)} label column(s); "
                            "one-hot labels take a column per class, the other kinds one column")
    if (c.submission_kind == "probabilities") != (len(c.submission_columns) > 1):
        raise PipelineError(f"{path}: submission_kind {c.submission_kind!r} with {len(c.submission_columns)} "
                            "column(s); 'probabilities' takes a column per class, 'label' and 'probability' one")
    if c.submission_kind == "label" and c.metric not in LABEL_METRICS:
        raise PipelineError(f"{path}: metric {c.metric!r} scores probabilities, but submission_kind 'label' submits a "
                            f"class per row; set metric to one of {', '.join(LABEL_METRICS)}")


def write_competition(root: Path, competition: Competition) -> None:
    described = {k: list(v) if k in LIST_FIELDS else v for k, v in asdict(competition).items()}
    write_text_atomic(root / DESCRIPTION, json.dumps(described, indent=2) + "\n")


# --- inference from the files ------------------------------------------------------------------------

def infer_competition(root: Path, label_columns: tuple[str, ...] = ()) -> tuple[Competition, list[str]]:
    """The description of the competition laid out in `root` (its training CSV's `label_columns` as given, when given),
    and a note for each choice its files leave open."""
    csvs = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".csv" and p.name != SOLUTION)
    sample_csv = _pick_sample(root, csvs)
    sample, folders, notes = _read(root / sample_csv), _image_folders(root), []
    others = [c for c in csvs if c != sample_csv]
    labels_csv = _pick_labels(root, others, notes, label_columns) \
        if any(not c.lower().startswith("test") for c in others) else None
    by_folder, folder_notes = _class_folders(root, folders)
    if by_folder and labels_csv and not _labels_name_the_folders(root, labels_csv, by_folder, notes):
        by_folder = None
    elif by_folder and not labels_csv:  # no CSV tells which level of folders names the classes
        _refuse_two_levels(root / by_folder[0]["train_images"], by_folder[1])
    notes += folder_notes if by_folder else []
    if by_folder and label_columns:
        raise PipelineError(f"--label-column: this competition's labels are its class folders in "
                            f"{by_folder[0]['train_images']}/, not a CSV's column; fetch it without --label-column")
    labeled, ids, classes = by_folder or _labels_by_csv(root, labels_csv or _pick_labels(root, others, notes, label_columns),
                                                        folders, sample, sample_csv, notes, label_columns)
    submission_id, suffix = sample.columns[0], labeled["image_suffix"]
    test_images, test_suffix = _sample_image_folder(root, _not_named(folders, "train"), sample, sample_csv)
    if test_suffix != suffix and labeled["label_kind"] == "folders":
        raise PipelineError(f"{root / sample_csv}: its ids name files '<id>{test_suffix}' in {test_images}/, but the "
                            f"training images, in the class folders of {labeled['train_images']}/, are named by their "
                            f"file names, and one naming is supported: write the sample's ids as the test images' file "
                            "names, with the extension")
    if test_suffix != suffix:
        raise PipelineError(f"{root}: the training ids name files '<id>{suffix}' in {labeled['train_images']}/, those "
                            f"of {sample_csv} '<id>{test_suffix}' in {test_images}/, and one naming is supported: "
                            + (f"save both splits' images in one format (the test images as '<id>{suffix}', say)"
                               if suffix and test_suffix else "write the ids of both CSVs alike, with the file "
                               "extension or without it"))
    submission_columns = tuple(sample.columns[1:])
    submission_kind, metric = _submission(sample_csv, sample, labeled["label_kind"], classes, notes)
    image_size = _square_for_varied_sizes(root / labeled["train_images"], ids, root / test_images,
                                          sample[submission_id], suffix, notes)
    return Competition(**labeled, test_images=test_images, image_size=image_size, sample_submission=sample_csv,
                       submission_id=submission_id, submission_columns=submission_columns,
                       submission_kind=submission_kind, metric=metric), notes


def _labels_by_csv(root: Path, labels_csv: str, folders: list[str], sample: pd.DataFrame, sample_csv: str,
                   notes: list[str], chosen: tuple[str, ...]) -> tuple[dict, pd.Series, list]:
    """The description's fields of a training-label CSV (its label columns those `chosen`, when given), its ids and its
    classes."""
    labels = _read(root / labels_csv)
    if pixel_columns(list(labels.columns)):
        raise PipelineError(f"{root / labels_csv}: pixel columns, not image files; `pipeline fetch` writes a "
                            "competition's pixel CSVs (train*.csv, test*.csv) as images, a Kaggle dataset's with "
                            "--dataset OWNER/NAME")
    id_column, submission_id = labels.columns[0], sample.columns[0]
    if id_column == "Unnamed: 0" and len(labels.columns) > 2:
        raise PipelineError(f"{root / labels_csv}: its first column has no name (a row index, as pandas' to_csv writes "
                            "it without index=False?), and the first column must hold the image ids: drop that column")
    misordered = submission_id != id_column and submission_id in labels.columns
    labels_off = PipelineError(f"{root / labels_csv}: its first column is {id_column!r}, but the sample submission's "
                               f"id column (its first) is {submission_id!r}, a later column here; the first column of "
                               f"each CSV must hold the image ids: move {submission_id!r} first here (or drop a row "
                               "index before it), or fix the sample's column order")
    try:
        train_images, suffix = _image_folder(root, _not_named(folders, "test"), labels[id_column], labels_csv,
                                             id_column, "train")
    except PipelineError:
        if misordered:
            raise labels_off from None
        _refuse_ids_in_a_later_column(root, folders, labels, labels_csv, "train")
        raise
    if misordered and id_column in sample.columns:  # the labels' ids name images: the sample's order is off
        raise PipelineError(f"{root / sample_csv}: its first column is {submission_id!r}, but the image ids are in its "
                            f"{id_column!r} column (as in {labels_csv}, whose ids name the images in {train_images}/); "
                            f"the first column of a sample submission holds the ids: write {id_column!r} first")
    if misordered:
        raise labels_off
    label_columns, label_kind = _label_columns(labels, labels_csv, sample, notes, chosen)
    if label_kind != "one-hot":
        _refuse_tag_lists(labels[label_columns[0]], labels_csv)
        _refuse_lone_classes(labels[label_columns[0]], labels_csv, label_columns[0])
    classes = list(label_columns) if label_kind == "one-hot" else sorted(set(labels[label_columns[0]].str.strip()) - {""})
    return dict(labels_csv=labels_csv, id_column=id_column, label_columns=label_columns, label_kind=label_kind,
                train_images=train_images, image_suffix=suffix), labels[id_column], classes


def _refuse_lone_classes(labels: pd.Series, csv: str, column: str) -> None:
    """A label column of which every label names one image (run-length masks, boxes, captions): no classes."""
    present = labels.str.strip()
    present = present[present != ""]
    if len(present) >= LONE_CLASSES_FROM and present.nunique() == len(present):
        raise PipelineError(f"{csv}: each of its {len(present)} labels in {column} names one image only (every image a "
                            "class of its own: masks, boxes or another value per image?); pipeline trains classifiers "
                            "of images into shared classes: name the class column with --label-column NAME if it has "
                            "one")


def _refuse_tag_lists(labels: pd.Series, csv: str) -> None:
    """Labels that are lists of other labels ('dog cat' beside 'dog' and 'cat': space-separated tags, multi-label)
    are one line: each such list would train as a class of its own."""
    present = set(labels.str.strip()) - {""}
    tags = {label for label in present if len(label.split()) == 1}
    lists = sorted(label for label in present if len(label.split()) > 1 and set(label.split()) <= tags)
    if lists:
        raise PipelineError(f"{csv}: labels such as {listed(lists, 3)} list several labels that are classes on their "
                            "own (space-separated tags: multi-label?); pipeline trains one class per image: give each "
                            "image one label")


NOT_CLASSES = {"image", "images", "img", "imgs", "label", "labels", "annotation", "annotations", "val", "valid",
               "validation", "dev", *MASK_FOLDERS}  # folder names that never name a class, besides those of splits


def _may_be_classes(names: set[str]) -> bool:
    """Folder names that may be classes: two at least, none named as images, labels or masks are (NOT_CLASSES), and
    under half named for a split (images/train and images/test are no classes; CIFAR-100's `train` among 100 is)."""
    split = sum(named_for(name, "train") or named_for(name, "test") for name in names)
    return len(names) >= 2 and split < len(names) / 2 and not any(name.casefold() in NOT_CLASSES for name in names)


def _class_folders(root: Path, folders: list[str]) -> tuple[tuple[dict, pd.Series, list] | None, list[str]]:
    """The folder of class folders of images named for training, else the one holding the most (plant-seedlings:
    train/<class>/<file>; Intel's seg_train/seg_train/<class>/; train/ beside a larger valid/): the description's
    fields, the ids (`<class>/<file>`) and the classes, with notes on the choice; None where there is none. Folders
    named for a split, for images or masks (images/train, <class>/images beside <class>/masks) are no classes."""
    sets, left_out = {}, {}
    for folder in _not_named(folders, "test"):
        found, left_out[folder] = class_folder_listing(root / folder)
        if _may_be_classes({name for _, name in found}):
            sets[folder] = found
    if not sets:
        return None, []
    chosen = max(sets, key=lambda folder: (named_for(folder, "train"), len(sets[folder])))
    found, notes = sets[chosen], []
    nested = next((image_id for image_id, _ in found if image_id.count("/") > 1), None)
    if nested:
        notes.append(f"{chosen}/: images in subfolders of its class folders ({nested}) are of that class")
    if left_out[chosen]:
        notes.append(f"{chosen}/: {len(left_out[chosen])} folder(s) and file(s) in its class folders left out as the "
                     f"masks or labels of its images ({listed(left_out[chosen], 3)}): not trained")
    others = [f for f in sets if f != chosen and not PurePosixPath(f).is_relative_to(chosen)
              and not PurePosixPath(chosen).is_relative_to(f)]
    others += [f for f in folders if named_for(f, "test") and _holds_class_folders(root / f)]  # Intel's seg_test/
    if others:
        notes.append(f"trained the {len(found)} images in the class folders of {chosen}/, not the "
                     + listed([f"{len(sets.get(f) or class_folder_listing(root / f)[0])} of {f}/" for f in others])
                     + f" (train_images; {EDIT})")
    return (dict(labels_csv="", id_column="", label_kind="folders", train_images=chosen, image_suffix=""),
            pd.Series([image_id for image_id, _ in found]), sorted({name for _, name in found})), notes


def _holds_class_folders(folder: Path) -> bool:
    """Whether `folder` holds two folders or more, and those are class folders of images (its subfolders listed
    first, cheaply: a test folder may hold 300,000 files)."""
    with os.scandir(folder) as entries:
        if sum(entry.is_dir() and not entry.name.startswith(".") for entry in entries) < 2:
            return False
    return _may_be_classes({name for _, name in class_folder_listing(folder)[0]})


def _refuse_two_levels(folder: Path, ids: pd.Series) -> None:
    """Class folders holding folders of images that may be classes as well (train/cat/2019/, train/cat/2020/), or
    that are named for a split (data/cat/test/): which level names the classes, or which images are for training,
    cannot be told, and that is one line."""
    below: dict[str, set[str]] = {}
    for parts in ids.str.split("/"):
        if len(parts) > 2:
            below.setdefault(parts[0], set()).add(parts[1])
    for name, inner in below.items():
        odd = sorted(n for n in inner if named_for(n, "train") or named_for(n, "test") or n.casefold() in NOT_CLASSES
                     and n.casefold() not in ("image", "images", "img", "imgs"))
        if odd:
            raise PipelineError(f"{folder}: its class folder {name}/ holds folders of images named for a split or for "
                                f"labels ({listed(odd, 3)}), which are no training images of {name}: keep those apart "
                                "(train/<class>/<file>, test/<file>)")
        if _may_be_classes(inner):
            raise PipelineError(f"{folder}: its class folder {name}/ holds folders of images ({listed(sorted(inner), 3)}"
                                "), so whether those or the folders above them are the classes cannot be told; keep "
                                "each class's images in its class folder, or in one folder inside it")


def _labels_name_the_folders(root: Path, labels_csv: str, by_folder: tuple[dict, pd.Series, list],
                             notes: list[str]) -> bool:
    """Whether the training CSV beside a folder of class folders (Paddy Doctor: train.csv `image_id,label,…` beside
    train_images/<label>/<file>) lists their images: then a column of it names each image's folder, and the folders
    are the labels (a note says so). Its ids naming those images but no column their folders is one line."""
    labels, folder = _read(root / labels_csv), by_folder[0]["train_images"]
    folder_of, twice = {}, []
    for image_id in by_folder[1]:
        label, name = image_id.split("/", 1)[0], image_id.rsplit("/", 1)[1]
        if name in folder_of:
            twice.append(f"{folder_of[name]}/{name} and {image_id}")
        folder_of |= {name: label, name.rsplit(".", 1)[0]: label}
    if len(twice) > len(by_folder[1]) / 4:  # the same names in each folder (images/, masks/): no class folders
        return False
    found = labels[labels.columns[0]].str.strip().map(folder_of)
    if found.notna().mean() < MARK_SHARE:
        return False
    if twice:
        raise PipelineError(f"{root / folder}: {len(twice)} image name(s) are in two class folders ({twice[0]}), and "
                            f"{labels_csv} names an image by its file name: keep each image in one class folder")
    listed_rows = labels[found.notna()]
    agree = {c: listed_rows[c].str.strip() == found.dropna() for c in labels.columns[1:]}
    best = max(agree, key=lambda c: agree[c].sum(), default=None)
    if best is None or not agree[best].all():
        first = agree[best].idxmin() if best is not None else None  # the first row that disagrees
        example = "" if first is None else (f"; {best} disagrees in {(~agree[best]).sum()} row(s), e.g. "
                                            f"{labels.at[first, labels.columns[0]]} in {found[first]}/ labelled "
                                            f"{labels.at[first, best]!r}")
        raise PipelineError(f"{root / labels_csv}: its ids name the images in the class folders of {folder}/, but no "
                            f"column of it names each image's folder{example}; if the folders are the classes and "
                            f"{labels_csv} only describes the images, move it out of the competition's folder, else "
                            "make its labels and the folders agree")
    unlisted = len(by_folder[1]) - found.notna().sum()
    notes.append(f"{labels_csv}: its {best} column names the class folder of each image in {folder}/: the folders "
                 "are the labels (label_kind 'folders'), and its other columns are not used"
                 + (f"; the {unlisted} image(s) there it does not list are trained too" if unlisted > 0 else ""))
    return True


def submitted_classes(c: Competition, classes: list[str], root: Path, whose: str = "the training labels' classes are",
                      advice: str = "fix submission_kind or the labels") -> list[str]:
    """The classes whose probabilities the submission `c` describes holds, checked against `classes`: the
    probability of class 1 is among them, or (a column per class) its columns are exactly them."""
    wanted = ["1"] if c.submission_kind == "probability" else list(c.submission_columns)
    if c.submission_kind == "probability" and set(classes) != {"0", "1"}:
        raise PipelineError(f"{root / DESCRIPTION}: submission_kind 'probability' writes the probability of class 1 "
                            f"of the classes 0 and 1, but {whose} {listed(classes, 6)}, so which class is the "
                            f"positive one cannot be told; relabel the classes 0 and 1 (1: the positive one), or {advice}")
    if c.submission_kind != "label" and (not set(wanted) <= set(classes) or
                                         (c.submission_kind == "probabilities" and set(wanted) != set(classes))):
        unlabeled = [name for name in wanted if name not in classes]
        unsubmitted = [name for name in classes if name not in wanted] if c.submission_kind == "probabilities" else []
        differ = "; ".join([f"none labelled {listed(unlabeled, 5)}"] * bool(unlabeled)
                           + [f"none submitted for {listed(unsubmitted, 5)}"] * bool(unsubmitted))
        raise PipelineError(f"{root / DESCRIPTION}: the submission takes the probabilities of {listed(wanted, 6)}, "
                            f"but {whose} {listed(classes, 6)} ({differ}); {advice}")
    return wanted


BINARY_SIGNATURES = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"PK\x03\x04": "a zip archive",
                     b"\x7fELF": "a program", b"\x93NUMPY": "a NumPy array"}


def read_csv_text(path: Path) -> pd.DataFrame:
    """A CSV's cells as strings, as written (an empty cell is ""); an unreadable file is one line naming it, and so
    is text that is not UTF-8 (UTF-16 without a byte-order mark reads as UTF-8 with a NUL byte in every other place)
    and a file that is not text at all."""
    try:
        with open(path, "rb") as file:
            head = file.read(1 << 16)
    except OSError as e:
        raise PipelineError(f"{path}: cannot read it ({e.strerror or e})") from None
    kind = next((name for magic, name in BINARY_SIGNATURES.items() if head.startswith(magic)), None)
    if kind or b"\x00" in head:
        utf16 = max(head[0::2].count(0), head[1::2].count(0)) > len(head) // 4
        marked = head[:2] in (b"\xff\xfe", b"\xfe\xff")
        raise PipelineError(f"{path}: " + (f"is {kind}, not a CSV" if kind else
                                            "is UTF-16 text (it starts with a byte-order mark), not UTF-8" if marked
                                            else "holds NUL bytes, so it is not UTF-8 text (UTF-16 without a "
                                            "byte-order mark?)" if utf16 else "holds binary data, not a CSV")
                            + "; save it as a UTF-8 CSV" + ("" if kind is None else " or name the right file"))
    frame = strict_csv(path, dtype=str, keep_default_na=False)
    with open(path, newline="", encoding="utf-8-sig") as file:  # pandas renames a second `label` to `label.1`
        header = next(csv.reader(file), [])
    twice = next((name for index, name in enumerate(header) if name.strip() and name in header[:index]), None)
    if twice is not None:
        raise PipelineError(f"{path}: its header names the column {twice!r} twice, so which holds the values cannot "
                            "be told; keep one, or rename the other")
    folded = [name.strip().casefold() for name in header]
    alike = next(((header[folded.index(name)], header[index]) for index, name in enumerate(folded)
                  if name and name in folded[:index]), None)
    if alike is not None:
        raise PipelineError(f"{path}: its header names the columns {alike[0]!r} and {alike[1]!r}, which differ in case "
                            "or spaces only, so which one is meant cannot be told; keep one, or rename the other")
    return frame


def strict_csv(path: Path, whole_rows: bool = False, **options) -> pd.DataFrame:
    """pandas' read of a CSV, where a row with more fields than the header is an error, not a shift of every column
    onto the next (pandas takes the first column as the index when the rows are one field longer); with
    `whole_rows`, so is a row with fewer (pandas fills them in as blanks), in a file that has no blank fields."""
    if whole_rows:
        try:
            with open(path, newline="") as file:
                widths = [len(row) for row in csv.reader(file) if row]
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise PipelineError(f"{path}: not a readable CSV ({e})") from None
        short = next((k for k, width in enumerate(widths[1:], 2) if width < widths[0]), None)
        if short is not None:
            raise PipelineError(f"{path}: row {short} has fewer fields than the header; fix the file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, index_col=False, **options)
    except OSError as e:
        raise PipelineError(f"{path}: cannot read it ({e.strerror or e})") from None
    except pd.errors.ParserWarning:
        raise PipelineError(f"{path}: a row has more fields than the header; "
                            f"{separator_hint(path) or 'fix the file'}") from None
    except UnicodeDecodeError:
        raise PipelineError(f"{path}: not UTF-8 text ({_first_non_utf8(path)}: saved in another encoding, such as "
                            "Latin-1 or Windows-1252?); save it as a UTF-8 CSV") from None
    except pd.errors.EmptyDataError:
        raise PipelineError(f"{path}: empty (no header, no rows); write the file again") from None
    except pd.errors.ParserError as e:
        widths = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if widths:
            expected, line, saw = widths.groups()
            raise PipelineError(f"{path}: line {line} has {saw} fields where the header has {expected}; "
                                f"{separator_hint(path) or 'fix that row (a value holding a comma needs quotes)'}") \
                from None
        raise PipelineError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None


def separator_hint(path: Path) -> str | None:
    """Advice for a CSV whose header has no comma but semicolons, tabs or bars (a spreadsheet's export in another
    locale, where a value's comma then splits a row); None otherwise."""
    with open(path, encoding="utf-8-sig", errors="replace") as file:
        header = file.readline()
    separator = next((name for mark, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")) if mark in header),
                     None)
    return f"its fields are separated by {separator}: save it with commas" if separator and "," not in header else None


def _first_non_utf8(path: Path) -> str:
    """Where a file stops being UTF-8: its line and byte."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        return f"line {line} holds the byte {raw[e.start:e.start + 1]!r}"
    return "an undecodable byte"


SMALLEST_PIXEL_GRID = 196  # columns named only by numbers (0 … 783, 1x1 … 28x28) that are pixels: 14×14 at least


def pixel_columns(columns: list) -> bool:
    """The columns are mostly `pixel…`, or a square grid of at least SMALLEST_PIXEL_GRID columns named by numbers
    (`1x1` … `28x28`, `0` … `783`): images as rows of a pixel CSV (digit-recognizer, MNIST-as-CSV)."""
    names = [str(c).strip().lower() for c in columns]
    if sum(name.startswith("pixel") for name in names) > len(names) // 2:
        return True
    numbered = sum(bool(re.fullmatch(r"\d+(x\d+)?", name)) for name in names)
    return numbered > len(names) // 2 and numbered >= SMALLEST_PIXEL_GRID and math.isqrt(numbered) ** 2 == numbered


def _read(path: Path) -> pd.DataFrame:
    frame = read_csv_text(path)
    if len(frame.columns) < 2 or frame.empty:
        raise PipelineError(f"{path}: needs an id column, at least one more column and a row; found "
                            f"{len(frame.columns)} column(s), {len(frame)} row(s)")
    return frame


def _pick_sample(root: Path, csvs: list[str]) -> str:
    named = [c for c in csvs if sample_named(c)]
    holding = sorted(f"{folder.name}/" for folder in root.iterdir() if folder.is_dir() and not csvs
                     and not folder.name.startswith(".") and any(p.suffix.lower() == ".csv" for p in folder.iterdir()))
    if len(holding) > 1:
        raise PipelineError(f"{root}: no CSV at its top, but {listed(holding)} each hold CSVs (several competitions in "
                            "one archive?); fetch one of them: an archive of one folder's contents")
    below = [] if csvs else [f for f in _image_folders(root) if any(sample_named(p.name) for p in (root / f).iterdir())]
    if below:
        raise PipelineError(f"{root}: no CSV at its top, but {listed([f'{f}/' for f in below], 3)} holds a sample "
                            "submission (the competition one level down or more?); fetch an archive of that folder's "
                            "contents")
    if len(named) != 1:
        raise PipelineError(f"{root}: {'no' if not named else 'more than one'} sample submission CSV (a name with "
                            f"'sample' and 'submission', e.g. sampleSubmission.csv) among {', '.join(csvs) or 'no CSVs'}"
                            f"; it fixes the submission's ids and columns: add it to the dataset")
    return named[0]


def _why_no_class_folders(root: Path) -> str:
    """Why the folder holding the most images in folders was not read as class folders, and what to do: "" where
    none holds any."""
    held = {folder: {name for _, name in class_folder_listing(root / folder)[0]} for folder in
            [".", *_not_named(_image_folders(root), "test")]}
    held["."] = {name for name in held["."] if _may_be_classes({name, "other"})}  # not train/, test/, images/
    folder = max(held, key=lambda f: len(held[f]))
    names, where = sorted(held[folder]), "the competition's top" if folder == "." else f"{folder}/"
    odd = [n for n in names if n.casefold() in NOT_CLASSES or named_for(n, "train") or named_for(n, "test")]
    if not names or len(names) > 1 and folder != "." and not odd:
        return ""
    if len(names) == 1:
        return f"; {where} holds one folder of images ({names[0]}/), and a classifier needs two classes or more"
    if folder == ".":
        return (f"; the class folders ({listed([f'{n}/' for n in names], 3)}) are at {where}: move them into a "
                "train/ folder")
    return (f"; the folders of {where} ({listed(names, 4)}) are no class folders, as {listed(odd, 3)} never name(s) "
            f"a class (a split, images, labels or masks): rename {'it' if len(odd) == 1 else 'them'} if a class")


def sample_named(name: str) -> bool:
    """A file named as a sample submission is: a CSV with 'sample' and 'submission' in its name."""
    return name.lower().endswith(".csv") and "sample" in name.lower() and "submission" in name.lower()


def _pick_labels(root: Path, csvs: list[str], notes: list[str], label_columns: tuple[str, ...] = ()) -> str:
    """The training labels: the one CSV besides the sample submission that is not the test list, the one of them
    holding the `label_columns` given (--label-column), or the one named as labels usually are (a note names the
    others)."""
    candidates = [c for c in csvs if not c.lower().startswith("test")]
    holding = [c for c in candidates if set(label_columns) <= set(_read(root / c).columns)] \
        if label_columns and len(candidates) > 1 else []
    preferred = holding if len(holding) == 1 else \
        [c for c in candidates if c.lower().replace("_", "") in ("trainlabels.csv", "labels.csv", "train.csv")]
    if len(preferred) == 1 and len(candidates) > 1:
        others = [c for c in candidates if c != preferred[0]]
        notes.append(f"read the training labels from {preferred[0]}, not {listed(others)} (labels_csv; {EDIT})")
    if len(preferred) == 1 or len(candidates) == 1:
        return (preferred or candidates)[0]
    if not candidates:
        raise PipelineError(f"{root}: no CSV of training labels (e.g. train.csv, labels.csv) beside the sample "
                            "submission, nor a training folder of class folders of images"
                            + (_why_no_class_folders(root) or "; pipeline reads labels from one of those: add a CSV of "
                               "id,label rows, or move each training image into a folder named for its class "
                               "(train/<class>/<file>)"))
    if label_columns:
        raise PipelineError(f"{root}: cannot tell which of {', '.join(candidates)} holds the training labels: "
                            f"{listed(holding) if holding else 'none'} of them hold(s) --label-column "
                            f"{' '.join(label_columns)}; name a column only the labels' CSV holds, or leave the other "
                            "CSVs out of the archive")
    raise PipelineError(f"{root}: cannot tell which of {', '.join(candidates)} holds the training labels; fetch with "
                        "--label-column NAME naming its label column, which one of them holds")


FOLDER_DEPTH = 3  # levels below the competition's folder searched for image folders (data/train/images)


def _image_folders(root: Path) -> list[str]:
    """Folders that may hold images: those in root and down to FOLDER_DEPTH levels below, shallower first, as
    relative POSIX paths."""
    level = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    found = list(level)
    for _ in range(FOLDER_DEPTH - 1):
        level = [q for p in level for q in sorted(p.iterdir()) if q.is_dir() and not q.name.startswith(".")]
        found += level
    return [p.relative_to(root).as_posix() for p in found]


def _not_named(folders: list[str], split: str) -> list[str]:
    """The folders but those named for the other split (`test`, `test_images`, `seg_test`): ids such as CIFAR-10's
    1, 2, … name files in both."""
    return [f for f in folders if not named_for(f, split)]


def _image_folder(root: Path, folders: list[str], ids: pd.Series, csv: str, column: str,
                  split: str) -> tuple[str, str]:
    """The folder holding most of `ids`' images, and how an id names its file there (the suffix added). Of folders
    holding as many, the one named most for the `split` and images, not masks (train/images beside train/masks),
    then the one with the fewest other files (CIFAR-10's test ids 1…300,000 include its train ids); two alike, or
    a tenth of the ids' images in other folders (test/NORMAL/, test/PNEUMONIA/), are one line."""
    wanted = set(ids.str.strip())
    best: tuple[int, int, float, str, str] = (0, -1, 0.0, "", "")
    tied, holding = None, {}
    for folder in folders:
        suffixes, entries, holding[folder] = _named_images(root / folder, wanted)
        if suffixes:
            suffix, count = suffixes.most_common(1)[0]
            named = sum(named_for(folder, word) for word in (split, "image")) - named_for(folder, "mask")
            found = (count, named, count / entries, folder, suffix)
            _refuse_two_namings(root / csv, column, folder, suffixes)
            tied = found[3] if found[:3] == best[:3] else tied if found[:3] < best[:3] else None
            best = max(best, found, key=lambda b: b[:3])
    if best[0]:
        _refuse_spread(root / csv, best[3], holding, split)
    if tied:
        raise PipelineError(f"{root / csv}: its ids name the images of both {best[3]}/ and {tied}/ alike (masks, or "
                            "another size?), so which holds the images cannot be told; leave the other folder out of "
                            "the competition's folder")
    if not best[0]:
        _refuse_path_ids(root, wanted, csv, column)
        _refuse_numbers_spelled_otherwise(root, folders, wanted, csv, column)
        _refuse_unread_formats(root, folders, wanted, csv, column)
        looked = listed(folders, 6) if folders else "no folders"
        raise PipelineError(f"{root / csv}: no image file is named by its {column!r} column (looked for <id> and "
                            f"<id>{'/'.join(IMAGE_SUFFIXES)} in {looked}); the images are missing, or extract the "
                            f"competition into dataset/ and describe it there in {DESCRIPTION} by hand (docs/fetch.md)")
    return best[3], best[4]


def _refuse_two_namings(csv: Path, column: str, folder: str, suffixes: Counter) -> None:
    """Ids naming a folder's images both as file names and without the extension (`7.png` beside `8`), a tenth of
    them or more each way, are one line: one naming is read."""
    ways = suffixes.most_common(2)
    if len(ways) == 2 and "" in dict(ways) and ways[1][1] >= sum(suffixes.values()) / 10:
        shown = [f"{n} {'as file names' if way == '' else f'without their extension ({way})'}" for way, n in ways]
        raise PipelineError(f"{csv}: its {column!r} values name the images of {folder}/ two ways, {' and '.join(shown)}"
                            "; write them one way, all with the extension or all without it")


def _named_images(folder: Path, wanted: set[str]) -> tuple[Counter, int, set[str]]:
    """How many image files in `folder` each suffix added to an id of `wanted` names (`''`: the id is the file's name),
    how many entries it holds, and the ids named."""
    suffixes: Counter = Counter()
    named, entries = set(), 0
    with os.scandir(folder) as listing:
        for entry in listing:
            entries += 1
            stem, dot, ext = entry.name.rpartition(".")
            if f".{ext.lower()}" not in IMAGE_SUFFIXES:
                continue
            if entry.name in wanted:
                suffixes[""] += 1
                named.add(entry.name)
            elif dot and stem in wanted:
                suffixes[f".{ext}"] += 1
                named.add(stem)
    return suffixes, entries, named


def _refuse_spread(csv: Path, chosen: str, holding: dict[str, set[str]], split: str) -> None:
    """Ids of which a tenth or more name images in folders other than `chosen` (chest-xray's test/NORMAL/ and
    test/PNEUMONIA/, a split cut into parts) are one line: a split's images are read from one folder."""
    rest = set().union(*holding.values()) - holding[chosen]
    if len(rest) < max(2, len(holding[chosen]) / 10):
        return
    others = sorted((f for f in holding if f != chosen and holding[f] & rest), key=lambda f: -len(holding[f] & rest))
    raise PipelineError(f"{csv}: its ids name {len(holding[chosen])} images in {chosen}/ and {len(rest)} more in "
                        + listed([f"{o}/" for o in others], 3) + f", but the {'training' if split == 'train' else split}"
                        f" images are read from one folder: move them into one")


def _refuse_path_ids(root: Path, ids: set[str], csv: str, column: str) -> None:
    """Ids that are paths to the images from the competition's folder (`train/1.png`) rather than names in an image
    folder are one line saying how to write them."""
    path = next((i for i in sorted(ids) if "/" in i.strip("/") and (root / i.lstrip("/")).is_file()), None)
    folders = _image_folders(root) if path is None and any("/" in i.strip("/") for i in ids) else []
    inside = next(((f, i) for i in sorted(ids)[:1000] if "/" in i.strip("/") for f in folders
                   if (root / f / i.lstrip("/")).is_file()), None)
    if inside is not None:
        raise PipelineError(f"{root / csv}: its {column!r} values hold a folder as well as a file name ({inside[1]!r}, "
                            f"in {inside[0]}/), but ids name files in one image folder: move the images into one folder "
                            "and write the ids as their file names")
    if path is not None:
        folder, name = path.lstrip("/").rsplit("/", 1)
        raise PipelineError(f"{root / csv}: its {column!r} values are paths from the competition's folder ({path!r}), "
                            f"but ids name a file in an image folder: write {name!r} (or {name.rsplit('.', 1)[0]!r}) "
                            f"for {folder}/{name}")


def _number_spelled(text: str) -> str | None:
    """A whole number however written (`7`, `007`, `7.0`) as `7`; None for other text."""
    return str(int(float(text))) if re.fullmatch(r"\d+(\.0+)?", text) else None


def _refuse_numbers_spelled_otherwise(root: Path, folders: list[str], ids: set[str], csv: str, column: str) -> None:
    """Ids that name no file but are the numbers of the files' names written otherwise (`1.0` or `0001` for `1.png`,
    as a float column or a zero-padded name writes them) are one line saying how to write them."""
    numbers = {number: i for i in ids if (number := _number_spelled(i)) is not None}
    for folder in folders:
        with os.scandir(root / folder) as entries:
            for entry in entries:
                stem = entry.name.rsplit(".", 1)[0] if entry.name.lower().endswith(IMAGE_SUFFIXES) else None
                if stem and stem not in ids and _number_spelled(stem) in numbers:
                    raise PipelineError(f"{root / csv}: its {column!r} values name no file, but they are the numbers "
                                        f"of the files' names written otherwise ({numbers[_number_spelled(stem)]!r} "
                                        f"for {folder}/{entry.name}); write each id as its file's name is written, "
                                        "without the file extension")


def _refuse_unread_formats(root: Path, folders: list[str], ids: set[str], csv: str, column: str) -> None:
    """Ids naming files of a format pipeline does not read (SIIM's DICOM `<id>.dcm`, `.npy`) are one line saying
    to convert them."""
    for folder in folders:
        with os.scandir(root / folder) as entries:
            for entry in entries:
                stem, dot, ext = entry.name.rpartition(".")
                if dot and (stem in ids or entry.name in ids):
                    raise PipelineError(f"{root / csv}: its {column!r} values name files such as {folder}/{entry.name}"
                                        f", and .{ext} is not an image format pipeline reads ({', '.join(IMAGE_SUFFIXES)}"
                                        f"); convert them to PNG (DICOM: with pydicom, say) under the same names")


def _sample_image_folder(root: Path, folders: list[str], sample: pd.DataFrame, csv: str) -> tuple[str, str]:
    """`_image_folder` of the sample's ids (its first column); where those name no image but a later column's do
    (Cassava 2019's `Category,Id`), one line saying so."""
    try:
        return _image_folder(root, folders, sample[sample.columns[0]], csv, sample.columns[0], "test")
    except PipelineError:
        _refuse_ids_in_a_later_column(root, folders, sample, csv, "test")
        raise


def _refuse_ids_in_a_later_column(root: Path, folders: list[str], frame: pd.DataFrame, csv: str, split: str) -> None:
    """A CSV whose first column names no image but a later one's do (`label,id`; Cassava 2019's sample `Category,Id`)
    is one line saying to write that column first."""
    for column in frame.columns[1:]:
        if frame[column].nunique() < MARK_SHARE * len(frame):  # ids are each row's own; labels repeat (0.png … 3.png)
            continue
        try:
            folder, _ = _image_folder(root, folders, frame[column], csv, column, split)
        except PipelineError:
            continue
        raise PipelineError(f"{root / csv}: its ids are in its {column!r} column (they name the images in {folder}/), "
                            f"not in its first, {frame.columns[0]!r}; the first column of {csv} holds the ids: write "
                            f"{column!r} first") from None


def _square_for_varied_sizes(train: Path, train_ids: pd.Series, test: Path, test_ids: pd.Series, suffix: str,
                             notes: list[str]) -> int | None:
    """None when the headers of up to HEADER_SAMPLE images spread over each split show one size for both; else the
    side of the square to decode every image to: the training images' median shorter side, at most LARGEST_SQUARE."""
    trained, tested = ([(width, height) for width, height, _ in header_sample(folder, ids.str.strip().tolist(), suffix)]
                       for folder, ids in ((train, train_ids), (test, test_ids)))  # one folder may hold both
    if len(set(trained + tested)) < 2:
        return None
    side = min(LARGEST_SQUARE, int(np.median([min(size) for size in trained or tested])))
    rule = (f"each is decoded at {side}×{side}, its shorter side resized to {side} and the centre cropped "
            f"(image_size; {EDIT})")
    if len(set(trained)) < 2 and len(set(tested)) < 2:  # each split of its own one size
        (tw, th), (sw, sh) = trained[0], tested[0]
        notes.append(f"{train.name}/ holds {tw}×{th} images, {test.name}/ {sw}×{sh} ones: {rule}")
        return side
    varied, sizes = (train, trained) if len(set(trained)) > 1 else (test, tested)
    examples = ", ".join(f"{w}×{h}" for w, h in sorted(set(sizes))[:3])
    notes.append(f"{varied.name}/: images of {len(set(sizes))} sizes among {len(sizes)} sampled ({examples}, …): "
                 + rule)
    return side


def _label_columns(labels: pd.DataFrame, csv: str, sample: pd.DataFrame, notes: list[str],
                   chosen: tuple[str, ...] = ()) -> tuple[tuple[str, ...], str]:
    """The label column(s) of the training CSV and their kind, taken only where something decides them: the
    columns named by --label-column (`chosen`); the sample's probability-per-class columns (one-hot); else
    `_classes_named_by_sample`; else `_decided_column`; else every column after the id a 0/1 mark (but for a few bad
    cells), nearly every row (MARK_SHARE) marking exactly one class and no column a flag (one-hot; the bad cells are
    then the listed problems of their rows). Anything else is refused, naming the columns, why, and --label-column:
    a guess could train on a fold or a flag. Empty columns (a trailing comma's) are none."""
    stripped = labels[labels.columns[1:]].apply(lambda column: column.str.strip())
    columns = [c for c in stripped.columns if (stripped[c] != "").any()]
    values, submitted = stripped[columns], tuple(sample.columns[1:])
    marks = values.apply(lambda column: column.map(one_hot_mark))
    probability = len(submitted) == 1 and _fractions(sample[submitted[0]])  # the sample holds a probability of 1
    namesake = submitted[0] if submitted[0] in columns else columns[0] if len(columns) == 1 else None
    if probability and namesake is not None and _placeholders_are_labels(sample[submitted[0]], values[namesake]):
        probability = False  # fractions that are labels: grades (0.5 … 2.0)
    integers = len(submitted) == 1 and _whole_numbers(sample[submitted[0]])  # the sample writes class codes
    if chosen:
        return _chosen_columns(values, marks, columns, chosen, csv, (probability, integers), notes)
    if len(submitted) > 1 and set(submitted) <= set(columns):
        _check_sample_classes(marks, columns, submitted, csv)
        return _one_hot([c for c in columns if c in submitted], columns, csv, notes), "one-hot"
    classes = _classes_named_by_sample(marks, columns, sample)
    if classes:
        return _one_hot(classes, columns, csv, notes), "one-hot"
    column, why = _decided_column(values, columns, sample, probability)
    if column is not None:
        if len(columns) > 1:
            notes.append(f"{csv} has the columns {', '.join(columns)} after its id: read {column!r} as the label "
                         f"(label_columns; {EDIT})")
        return (column,), _label_kind(values[column], (probability, integers), csv, column, notes)
    if len(columns) > 1 and all(_is_marks(marks[c]) for c in columns):
        not_one_hot = _not_one_hot(marks, columns, csv)
        if not not_one_hot:
            return tuple(columns), "one-hot"
        why += f"; the 0/1 columns are not one-hot classes: {not_one_hot}"
    raise PipelineError(f"{csv}: its files do not decide which of the columns after its id ({listed(columns, 6)}) "
                        f"holds the labels ({why}); name it with `pipeline fetch --label-column NAME` (once per class "
                        "for one-hot columns)")


def one_hot_mark(cell: str) -> str:
    """A one-hot cell as 0 or 1 where it spells one (1.0, as pandas writes a float column; True, as get_dummies
    writes), else as it is."""
    return BINARY_SPELLINGS.get(cell.strip().casefold(), cell)


def _is_marks(column: pd.Series) -> bool:
    """A one-hot class column: 0 or 1 (`one_hot_mark`) in MARK_SHARE of its cells at least."""
    return bool(column.isin(["0", "1"]).mean() >= MARK_SHARE)


def _not_one_hot(marks: pd.DataFrame, columns: list[str], csv: str) -> str:
    """Why the 0/1 columns are not one-hot class columns ("" where nearly every row, MARK_SHARE, marks exactly one
    and no column is a flag: marked beside another class in most of the rows marking it); one line where most rows
    mark several (multi-label)."""
    if (marks == "1").sum(axis=1).gt(1).mean() > 0.5:
        raise PipelineError(f"{csv}: most rows mark several of the 0/1 columns {listed(columns, 5)} (multi-label? "
                            "pipeline trains one class per image); if some are a fold or a flag, name the class columns "
                            "with `pipeline fetch --label-column NAME`, once each")
    flag = _flag(marks, columns)
    if flag:
        return f"{flag} is marked beside another of them in most of its rows (a flag, not a class?)"
    share = _one_marked(marks, columns)
    return f"only {share:.0%} of the rows mark exactly one" if share < MARK_SHARE else ""


def _flag(marks: pd.DataFrame, columns: list[str]) -> str | None:
    """The 0/1 column that is a flag, not a class: of those marked beside another in most of the rows marking them
    (a class correlated with a flag is too), the one whose leaving out makes the most rows mark exactly one."""
    ones = (marks[columns] == "1").astype(int)
    marked = ones.sum(axis=1)
    beside = [c for c in columns if ones[c].any() and (marked[ones[c] == 1] > 1).mean() > 0.5]
    return max(beside, key=lambda c: _one_marked(marks, [k for k in columns if k != c]), default=None)


def _check_sample_classes(marks: pd.DataFrame, columns: list[str], submitted: tuple[str, ...], csv: str) -> None:
    """The one-hot rows' classes are the sample's: a 0/1 column the sample lacks, marked alone in most of the rows
    marking it, is a class it does not submit (its rows would mark none) — one line."""
    ones = marks == "1"
    sampled = ones[list(submitted)].any(axis=1)
    lone = [c for c in columns if c not in submitted and _is_marks(marks[c])
            and ones[c].any() and (ones[c] & ~sampled).sum() > ones[c].sum() / 2]
    if lone:
        raise PipelineError(f"{csv}: its rows marking {listed(lone, 3)} mark none of the sample submission's class "
                            "columns: a class the sample has no column for? give the sample that column, or drop "
                            "those rows")


def _classes_named_by_sample(marks: pd.DataFrame, columns: list[str], sample: pd.DataFrame) -> list[str]:
    """The one-hot class columns where the sample's one column holds names of 0/1 columns as its placeholder labels:
    those 0/1 columns, or all but the one it does not name (a fold, a flag) whose leaving out alone makes the most
    rows mark exactly one — nearly every row (MARK_SHARE) either way; none where no such set is."""
    submitted = tuple(sample.columns[1:])
    placeholders = set(sample[submitted[0]].str.strip()) - {""} if len(submitted) == 1 else set()
    kept_marks = [c for c in columns if _is_marks(marks[c])]
    if not placeholders or not placeholders <= set(kept_marks):
        return []
    sets = [kept_marks, *([c for c in kept_marks if c != left] for left in kept_marks if left not in placeholders)]
    shares = [_one_marked(marks, candidate) for candidate in sets]
    best = [candidate for candidate, share in zip(sets, shares) if share == max(shares) >= MARK_SHARE]
    return kept_marks if kept_marks in best else best[0] if len(best) == 1 else []


def _one_marked(marks: pd.DataFrame, columns: list[str]) -> float:
    """The share of rows marking exactly one of the 0/1 `columns`."""
    return float((marks[columns] == "1").sum(axis=1).eq(1).mean())


def _decided_column(values: pd.DataFrame, columns: list[str], sample: pd.DataFrame,
                    probability: bool) -> tuple[str | None, str]:
    """The label column where the files decide it — the only column after the id, else the one column that every
    rule picking a single column agrees on: the sample's one column, where the CSV has it too; named like a label
    (LABEL_NAMES); holding every placeholder class name of the sample (in any case; a number names none); the only
    two-valued column where the sample holds a probability of 1 (never alone: a 0/1 flag is two-valued too, and a
    label with a third value, -1 for uncertain, is not) — and else None, with why."""
    if len(columns) == 1:
        return columns[0], ""
    submitted = tuple(sample.columns[1:])
    placeholders = set(sample[submitted[0]].str.strip().str.casefold()) - {""} if len(submitted) == 1 else set()
    if probability or any(_number(v) for v in placeholders):
        placeholders = set()  # a number says nothing of which column holds it
    picks = {"is the sample's column": [c for c in columns if len(submitted) == 1 and c == submitted[0]],
             "is named like a label": [c for c in columns if c.strip().lower() in LABEL_NAMES],
             "holds the sample's placeholder classes": [c for c in columns if placeholders and placeholders <= set(
                 values[c].str.casefold())],
             TWO_VALUED: [c for c in columns if probability and _two_valued(values[c])]}
    single = {rule: pick[0] for rule, pick in picks.items() if len(pick) == 1}
    if len(set(single.values())) == 1 and set(single) != {TWO_VALUED}:  # two values alone: a flag's too
        return next(iter(single.values())), ""
    said = [f"{pick[0]} {rule}" if len(pick) == 1 else f"{listed(pick, 4)} each {rule.removeprefix('is ')}"
            for rule, pick in picks.items() if pick]
    return None, "; ".join(said) or "no column is named like a label, and the sample submission names none"


TWO_VALUED = "is two-valued, as the label of a probability is"


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


WHOLE_FLOAT = re.compile(r"-?\d+\.0+")  # a class code as pandas writes a float column: 3.0


def _whole_numbers(values: pd.Series) -> bool:
    return bool(values.str.strip().str.fullmatch(r"-?\d+").all())


def _two_valued(values: pd.Series) -> bool:
    """Two values (but for a few bad cells: MARK_SHARE) fill the column."""
    counts = values[values != ""].value_counts()
    return len(counts) >= 2 and counts.iloc[:2].sum() >= MARK_SHARE * counts.sum()


def _chosen_columns(values: pd.DataFrame, marks: pd.DataFrame, columns: list[str], chosen: tuple[str, ...], csv: str,
                    sample_kind: tuple[bool, bool], notes: list[str]) -> tuple[tuple[str, ...], str]:
    """The columns --label-column names: one label column, or several one-hot class columns (each of 0/1 marks)."""
    for name in chosen:
        if name not in columns:
            raise PipelineError(f"--label-column {name!r}: {csv} has no such column after its id (it has "
                                f"{listed(columns, 8)}); name one of those")
        if chosen.count(name) > 1:
            raise PipelineError(f"--label-column {name!r} is given twice; name each column once")
        if len(chosen) > 1 and not _is_marks(marks[name]):
            odd = sorted(set(marks[name]) - {"0", "1"})
            raise PipelineError(f"--label-column {name!r}: {csv}'s {name} holds {listed(odd, 3)}, not 0/1 marks; "
                                "several --label-column name one-hot class columns, one names the label column")
    if len(chosen) == 1:
        return chosen, _label_kind(values[chosen[0]], sample_kind, csv, chosen[0], notes)
    return chosen, "one-hot"


BINARY_SPELLINGS = {"0": "0", "1": "1", "0.0": "0", "1.0": "1", "false": "0", "true": "1", "no": "0",
                    "yes": "1"}  # casefolded


def _label_kind(values: pd.Series, sample_kind: tuple[bool, bool], csv: str, column: str, notes: list[str]) -> str:
    """binary (0 and 1, also written 0.0 and 1.0; False/True or No/Yes where the sample asks for a probability of 1),
    integers (but for codes of one width with leading zeros, 007: names, submitted as written; codes written 3.0, as
    pandas writes a float column, where the sample writes whole numbers or beside codes written 3) or names. `sample_kind`: whether the sample
    holds a probability of 1, and whether it writes whole numbers."""
    probability, integers = sample_kind
    present = set(values) - {""}
    if present <= {"0", "1"}:
        return "binary"
    if present <= {"0", "1", "0.0", "1.0"} or probability and {v.casefold() for v in present} <= set(BINARY_SPELLINGS):
        notes.append(f"{csv}: {column}'s {listed(sorted(present))} read as 0 and 1 (1: true, yes)")
        return "binary"
    floats = [v for v in present if WHOLE_FLOAT.fullmatch(v)]
    mixed = floats and len(floats) < len(present) and all(v.lstrip("-").isdigit() for v in present - set(floats))
    if floats and (integers and len(floats) == len(present) or mixed):  # 2.0 beside 2: one number, however written
        notes.append(f"{csv}: {column}'s {listed(sorted(floats, key=float), 4)} read as the whole numbers "
                     + ("they are, beside codes written without '.0'" if mixed else "the sample writes"))
        return "integers"
    if all(v.isdigit() for v in present):
        padded = any(len(v) > 1 and v.startswith("0") for v in present) and len({len(v) for v in present}) == 1
        return "names" if padded else "integers"
    return "names"


MARK_SHARE = 0.9  # a one-hot class column holds 0 or 1 in this share of its rows at least (the rest: listed problems)


def _one_hot(classes: list[str], columns: list[str], csv: str, notes: list[str]) -> tuple[str, ...]:
    """`classes` as the one-hot columns, and a note naming the columns left out (a fold, a weight)."""
    others = [c for c in columns if c not in classes]
    if others:
        notes.append(f"{csv}: read {listed(classes, 5)} as one-hot class columns; {listed(others, 5)} left out "
                     f"(label_columns; {EDIT})")
    return tuple(classes)


def _fractions(values: pd.Series) -> bool:
    """The cells are numbers, some of them not whole (a probability's placeholder, 0.5)."""
    numbers = pd.to_numeric(values, errors="coerce")
    return bool(numbers.notna().all() and (numbers % 1 != 0).any())


def _placeholders_are_labels(placeholders: pd.Series, labels: pd.Series) -> bool:
    """The sample's fractions are labels of the training CSV (grades such as 0.5 … 2.0), not a probability."""
    return set(placeholders.str.strip()) <= set(labels.str.strip())


def _refuse_several_tokens(sample_csv: str, values: pd.Series, classes: list[str]) -> None:
    """A sample value of several space-separated tokens that is no class (`new_whale w_1 w_2 …`: several guesses,
    MAP@5; `1000 0.5`: a label and its confidence) asks for a submission other than one label per image."""
    several = sorted({v for v in values.str.strip() if len(v.split()) > 1} - set(classes))
    if several:
        raise PipelineError(f"{sample_csv}: its values such as {several[0]!r} hold several space-separated tokens, "
                            "not one of the training labels: the submission asks for several labels per image (top-k, "
                            "MAP@k) or a label with its confidence; pipeline writes one label per image, so this "
                            "competition is not supported")


def _refuse_columns_unlike_classes(sample_csv: str, columns: tuple[str, ...], classes: list[str],
                                   label_kind: str) -> None:
    """The sample's columns after the id, neither one label column nor one per training class: one line naming how
    they differ (a class in another case, a column no training label has, a class without a column)."""
    spelled = {name.casefold(): name for name in classes}
    recased = [f"{c!r} (the labels write {spelled[c.casefold()]!r})" for c in columns
               if c not in classes and c.casefold() in spelled]
    extra = [c for c in columns if c not in classes and c.casefold() not in spelled]
    lacking = [k for k in classes if k not in columns and k.casefold() not in {c.casefold() for c in columns}]
    differ = "; ".join([f"in another case {listed(recased, 3)}"] * bool(recased)
                       + [f"no training label is {listed(extra, 4)}"] * bool(extra)
                       + [f"no column for the class(es) {listed(lacking, 4)}"] * bool(lacking))
    advice = ("name the training CSV's one-hot class columns with `pipeline fetch --label-column NAME`, once each, "
              "if it has them; else make the sample's header and the training classes agree"
              if label_kind not in ("one-hot", "folders") else "make the sample's header and the training classes agree")
    raise PipelineError(f"{sample_csv}: its {len(columns)} columns after the id are neither one label column nor one "
                        f"per class of the training labels ({len(classes)} classes): {differ}; {advice}")


def _submission(sample_csv: str, sample: pd.DataFrame, label_kind: str, classes: list[str],
                notes: list[str]) -> tuple[str, str]:
    """What the submission's columns (those of `sample` after its id) hold, and the metric that goes with it."""
    columns = tuple(sample.columns[1:])
    if len(columns) == 1 and label_kind == "binary":
        notes.append(f"{sample_csv}: one column for 0/1 labels, read as the probability of 1 scored by ROC AUC "
                     f"(for hard 0/1 labels set submission_kind 'label' and metric 'accuracy'; {EDIT})")
        return "probability", "roc_auc"
    if len(columns) == 1 and _fractions(sample[columns[0]]) and not _placeholders_are_labels(sample[columns[0]],
                                                                                              pd.Series(classes)):
        raise PipelineError(f"{sample_csv}: its {columns[0]} column holds fractions, a probability of 1, but the "
                            f"training labels are {listed(classes, 4)}, not 0 and 1: " + (
                                f"{'name the class folders' if label_kind == 'folders' else 'write them as'} 0 and 1 "
                                "(1 for the class whose probability is asked)" if len(classes) <= 2
                                else "pipeline trains classifiers; a number per image (regression) is not supported"))
    if len(columns) == 1:
        _refuse_several_tokens(sample_csv, sample[columns[0]], classes)
        return "label", "accuracy"
    usage = next((column for column in columns if column.strip().casefold() == USAGE.casefold()), None)
    if usage is not None:
        raise PipelineError(f"{sample_csv}: its {usage!r} column is a Kaggle solution's (each row's leaderboard, "
                            "Public or Private), which no submission holds; drop that column, or use the "
                            "competition's own sample submission")
    if set(columns) != set(classes):
        _refuse_columns_unlike_classes(sample_csv, columns, classes, label_kind)
    metric = "mean_roc_auc" if label_kind == "one-hot" else "log_loss"
    notes.append(f"{sample_csv}: a probability per class, scored by {metric} (the other: "
                 f"{'log_loss' if metric == 'mean_roc_auc' else 'mean_roc_auc'}; {EDIT})")
    return "probabilities", metric
