"""The competition on disk, as its description (`pipeline/competition.py`) says: the labeled training images, the
test ids of the sample submission, and every problem found in them."""
from __future__ import annotations

import glob
import hashlib
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from pipeline.competition import (BINARY_SPELLINGS, DESCRIPTION, WHOLE_FLOAT, Competition, one_hot_mark,
                                  read_competition, read_csv_text, separator_hint, submitted_classes)
from pipeline.errors import PipelineError, listed
from pipeline.images import IMAGE_SUFFIXES, class_folder_images, listed_as_image

SHOWN = 5  # how many offending names an error message lists


def id_sort_key(image_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order (2 before 10), any others after them by name."""
    return (0, int(image_id), "") if image_id.isascii() and image_id.isdigit() else (1, 0, image_id)


def shown_names(names: set[str] | list[str], suffix: str = "") -> str:
    ordered = sorted(names, key=id_sort_key)
    shown = ", ".join(f"{n}{suffix}" for n in ordered[:SHOWN])
    return shown + (f" and {len(ordered) - SHOWN} more" if len(ordered) > SHOWN else "")


SAMPLE_FIELDS = "submission_id, submission_columns"  # the description's fields naming the sample's columns


def read_id_csv(path: Path, columns: tuple[str, ...] = ("id", "label"), unique: bool = True,
                fields: str = "id_column, label_columns") -> pd.DataFrame:
    """Read a CSV as strings, refusing missing `columns` (the first: the ids, stripped; `fields`: those of the
    description that name them), empty files and (`unique`) duplicate ids."""
    if path.is_dir():
        raise PipelineError(f"{path}: a folder, not a CSV file; name the file in dataset/competition.json")
    if not path.is_file():
        raise PipelineError(f"{path}: not found; run `pipeline fetch` first")
    frame = read_csv_text(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PipelineError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(frame.columns)}); "
                            + (separator_hint(path) or f"name its columns in dataset/competition.json ({fields}) or fix "
                               "the header"))
    if frame.empty:
        raise PipelineError(f"{path}: has a header but no rows")
    frame[columns[0]] = frame[columns[0]].str.strip()
    duplicated = frame[columns[0]][frame[columns[0]].duplicated()]
    if unique and len(duplicated):
        distinct = next((column for column in columns[1:] if len(frame) > 2 and frame[column].is_unique), None)
        hint = (f"; its {distinct!r} column holds one value per row: are the names in its header swapped?" if distinct
                else "; is that its id column? (dataset/competition.json names it)" if columns[0] != "id" else "")
        raise PipelineError(f"{path}: {len(duplicated)} duplicate id(s) in its {columns[0]!r} column: "
                            f"{shown_names(set(duplicated))}{hint or '; keep one row per id'}")
    return frame


def image_ids(folder: Path, suffix: str = ".png") -> set[str]:
    """The ids of the image files `<id><suffix>` in `folder` (with no suffix: the names of its image files)."""
    if folder.exists() and not folder.is_dir():
        raise PipelineError(f"{folder}: a file where a folder of images is expected; fetch the competition again")
    if not folder.is_dir():
        described = folder.parent / DESCRIPTION
        raise PipelineError(f"{folder}: folder not found; " + (f"fix the folder {described} names, or fetch again"
                                                               if described.is_file() else "run `pipeline fetch` first"))
    with os.scandir(folder) as entries:
        if suffix:
            return {e.name[:-len(suffix)] for e in entries if e.name.endswith(suffix) and listed_as_image(e)}
        return {e.name for e in entries if e.name.lower().endswith(IMAGE_SUFFIXES) and listed_as_image(e)}


def read_labels(root: Path, c: Competition) -> tuple[pd.DataFrame, list[str]]:
    """The training CSV as `id,label` (one-hot rows as their class's name; rows marking no class or several get an
    empty label) and a problem line for each such row."""
    if c.label_kind == "folders":
        return class_folder_labels(root / c.train_images), []
    columns = (c.id_column, *c.label_columns)
    frame = read_id_csv(root / c.labels_csv, columns, unique=False)
    if c.label_kind != "one-hot":
        check_label_kind(root, c, frame[c.label_columns[0]])
        check_last_row_whole(root / c.labels_csv, frame[c.id_column], frame[c.label_columns[0]])
        return pd.DataFrame({"id": frame[c.id_column], "label": frame[c.label_columns[0]]}), []
    cells = frame[list(c.label_columns)]
    values = cells.apply(lambda column: pd.to_numeric(column.map(one_hot_mark), errors="coerce")).to_numpy()
    odd = ~np.isin(values, (0, 1))  # NaN (not a number) too
    count = (values == 1).sum(axis=1)
    names = np.array(c.label_columns)[(values == 1).argmax(axis=1)]
    labels = pd.DataFrame({"id": frame[c.id_column], "label": np.where((count == 1) & ~odd.any(axis=1), names, "")})
    problems = []
    for row in np.flatnonzero(odd.any(axis=1) | (count != 1)):
        column = odd[row].argmax()
        problems.append(f"{c.labels_csv}: id {frame[c.id_column].iloc[row]} " + (
            f"holds {cells.iat[row, column]!r} in {c.label_columns[column]}; a one-hot row holds 0 or 1 in each class "
            "column" if odd[row].any() else f"marks {count[row]} classes, not one"))
    return labels, problems


def integer_code(label: str) -> bool:
    """A label of kind integers: a whole number, written 3 or (as pandas writes a float column) 3.0."""
    return label.lstrip("-").isdigit() or WHOLE_FLOAT.fullmatch(label) is not None


def integer_text(code: str) -> str:
    """An `integer_code` as the number it is: '3' for 3.0, 03 or 3."""
    return str(int(float(code)))


def check_label_kind(root: Path, c: Competition, labels: pd.Series) -> None:
    """Labels of kind integers are whole numbers, of kind binary 0 and 1 (or False and True, 0.0 and 1.0): a description that says otherwise is one
    line (its label kind decides the submission's shape)."""
    values = set(labels.astype(str).str.strip()) - {""}
    allowed = {"integers": integer_code,
               "binary": lambda v: v.casefold() in BINARY_SPELLINGS}.get(c.label_kind)
    odd = sorted(v for v in values if allowed and not allowed(v))
    if odd:
        raise PipelineError(f"{root / DESCRIPTION}: label_kind {c.label_kind!r}, but {c.labels_csv} has labels like "
                            f"{', '.join(map(repr, odd[:3]))}; fix label_kind ('names' for class names)")


def class_folder_labels(folder: Path) -> pd.DataFrame:
    """`id,label` of the images in `folder`'s class folders: ids `<class>/<file>`, labels the folders' names."""
    if not folder.is_dir():
        raise PipelineError(f"{folder}: folder of class folders not found; run `pipeline fetch` first")
    rows = class_folder_images(folder)
    if not rows:
        raise PipelineError(f"{folder}: no class folder holds an image; fetch the competition again")
    return pd.DataFrame(rows, columns=["id", "label"])


def train_problems(root: Path) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The training CSV without its unusable rows (labels normalised: `normalised_labels`), every problem found,
    one line each: duplicate ids and empty labels (those rows dropped), ids without an image (dropped), images
    without an id (but for the test images, where they share a folder); and the notes of labels read otherwise than
    written."""
    c = read_competition(root)
    labels, problems = read_labels(root, c)
    labels["label"], notes = normalised_labels(labels["label"], c.label_kind)
    # class folders: the labels are the images found, and an image beside the class folders has no class
    images = set(labels["id"]) | image_ids(root / c.train_images, "") if c.label_kind == "folders" \
        else image_ids(root / c.train_images, c.image_suffix)
    counts = labels["id"].value_counts()
    for image_id in sorted(counts[counts > 1].index, key=id_sort_key):
        problems.append(f"{c.labels_csv}: id {image_id} appears {counts[image_id]} times")
    blank = labels["label"] == ""
    if c.label_kind != "one-hot":
        problems += [f"{c.labels_csv}: id {image_id} has no label" for image_id in labels["id"][blank]]
    missing = set(labels["id"]) - images
    elsewhere = near_misses(root / c.train_images, missing, c.image_suffix) if c.label_kind != "folders" else {}
    problems += [f"{c.train_images}/{c.image_file(i)}: missing (listed in {c.labels_csv})"
                 + (f"; {elsewhere[i]} is there: rename it" if i in elsewhere else
                    "; the id holds a path separator, so it names no file of the folder" if "/" in i or "\\" in i else "")
                 for i in sorted(missing, key=id_sort_key)]
    extra = images - set(labels["id"])
    if PurePosixPath(c.test_images) == PurePosixPath(c.train_images):
        extra -= set(read_id_csv(root / c.sample_submission, (c.submission_id,), fields=SAMPLE_FIELDS)[c.submission_id])
    elif c.label_kind != "folders":
        check_not_swapped(root, c, images, labeled=set(labels["id"]),
                          tested=set(read_id_csv(root / c.sample_submission, (c.submission_id,), fields=SAMPLE_FIELDS)[c.submission_id]),
                          test=False)
    unlisted = "in no class folder" if c.label_kind == "folders" else f"not listed in {c.labels_csv}"
    problems += [f"{c.train_images}/{c.image_file(i)}: {unlisted}" for i in sorted(extra, key=id_sort_key)]
    usable = ~labels["id"].isin(set(counts[counts > 1].index) | missing) & ~blank
    return labels[usable], problems, notes


def check_last_row_whole(path: Path, ids: pd.Series, labels: pd.Series) -> None:
    """A labels file cut mid-row (a copy or download that stopped): it ends without a newline, and its last label
    is met nowhere else but begins another label (`b` of `bird`): refused rather than trained as a class."""
    if not len(labels) or not labels.iat[-1]:
        return
    with open(path, "rb") as file:
        file.seek(-1, os.SEEK_END)
        if file.read(1) in (b"\n", b"\r"):
            return
    last, others = labels.iat[-1], set(labels.iloc[:-1])
    longer = sorted(label for label in others if label.startswith(last) and label != last)
    if last not in others and longer:
        raise PipelineError(f"{path}: the last row ({ids.iat[-1]},{last}) looks cut off: the file ends mid-line and "
                            f"no other row has the label {last!r}, which begins {longer[0]!r}; the file is likely "
                            "truncated: fetch again (pipeline fetch --force) or fix that row")


def plain_text(label: str) -> str:
    """A label as one reads it: Unicode compatibility forms folded (full-width ｄｏｇ is dog), invisible format
    characters (zero-width spaces, BOMs) dropped, surrounding spaces stripped."""
    folded = unicodedata.normalize("NFKC", label)
    return "".join(c for c in folded if unicodedata.category(c) != "Cf").strip()


CASE_SLIP_SHARE = 0.1  # spellings that differ only in case are one class when the rarer ones hold less of its rows


def normalised_labels(labels: pd.Series, label_kind: str = "names") -> tuple[pd.Series, list[str]]:
    """Labels without surrounding spaces (as ids), and spellings of one class read as the most frequent one when the
    others are slips (together under CASE_SLIP_SHARE of their rows: 'Cat' in 3 rows beside 'cat' in 5,000; of
    `label_kind` integers, '01' beside '1'); comparably frequent ones ('a' and 'A' in a set of letters, codes '01' and
    '1') stay classes of their own, but for codes of which several are written two ways ('01' beside '1' and '02'
    beside '2': one column's two ways of writing its numbers). Of kind integers, a number written as a float reads as
    its value ('3.0' is 3, beside '3' too: a pandas column with blanks); of kind binary, False/True and 0.0/1.0 as 0 and 1. Also a note for each
    spelling read otherwise than written."""
    stripped = labels.map(plain_text)
    if label_kind == "binary":
        stripped = stripped.map(one_hot_mark)  # the same spellings of 0 and 1

    def spelled(label: str) -> str:  # what the spellings of one class share
        return integer_text(label) if label_kind == "integers" and integer_code(label) else label.casefold()

    counts = stripped[stripped != ""].value_counts()
    groups: dict[str, list[str]] = {}
    for spelling in sorted(counts.index, key=lambda name: (-counts[name], name)):
        groups.setdefault(spelled(spelling), []).append(spelling)
    canonical = {}
    padded = sum(len(names) > 1 for names in groups.values()) > 1 and label_kind == "integers"  # 01, 02 beside 1, 2
    for key, (main, *others) in groups.items():
        slips = padded or sum(counts[n] for n in others) < CASE_SLIP_SHARE * (counts[main] + sum(counts[n] for n in others))
        floats = label_kind == "integers" and all(n == key or WHOLE_FLOAT.fullmatch(n) for n in (main, *others))
        one = key if label_kind == "integers" and integer_code(main) else main
        canonical |= {name: one if slips or floats else name for name in (main, *others)}  # 2.0 is 2, however many
    read = stripped.map(lambda name: canonical.get(name, name))
    differ = (labels != read) & (read != "")
    changed = pd.DataFrame({"written": labels[differ], "read": read[differ]}).value_counts()
    notes = [f"{written!r} read as {name!r} ({n} row{'s' * (n > 1)})" for (written, name), n in sorted(changed.items())]
    apart = [" and ".join(map(repr, sorted(names))) for names in groups.values()
             if len(names) > 1 and canonical[names[1]] != canonical[names[0]]]
    notes += [f"{pair} kept as classes of their own (comparably frequent; where they are one, write it one way)"
              for pair in apart]
    return read, notes


def problems_message(where: Path, problems: list[str], what: str, advice: str) -> str:
    shown = "; ".join(problems[:SHOWN]) + (f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else "")
    return f"{where}: {len(problems)} problem(s) in the {what}: {shown}. {advice}"


def read_sample(root: Path, c: Competition) -> pd.DataFrame:
    """The sample submission, its columns those the description `c` gives."""
    sample = read_id_csv(root / c.sample_submission, (c.submission_id,), fields=SAMPLE_FIELDS)
    described = [c.submission_id, *c.submission_columns]
    if list(sample.columns) != described:
        differ = [f"{d!r} where it has {h!r}" for d, h in zip(described, sample.columns) if d != h]
        if not (root / DESCRIPTION).is_file():  # CIFAR-10's shape, taken where nothing describes the competition
            unnamed = " (an unnamed column: a comma at the end of each row?)" if any(
                str(h).startswith("Unnamed:") for h in sample.columns) else ""
            raise PipelineError(f"{root / c.sample_submission}: has the columns {','.join(map(str, sample.columns))}"
                                f"{unnamed}, and with no {DESCRIPTION} in {root} the submission is CIFAR-10's "
                                f"{','.join(described)}; fix the file, or describe the competition in {DESCRIPTION}")
        raise PipelineError(f"{root / DESCRIPTION}: describes the submission as {','.join(described)}, but "
                            f"{root / c.sample_submission} has {','.join(sample.columns)} ("
                            f"{'; '.join(differ[:3]) or f'{len(described)} columns, not {len(sample.columns)}'}); "
                            "fix the description (or fetch again with --force)")
    return sample


def check_test(root: Path, notes: list[str] | None = None) -> list[str]:
    """The sample submission has the described columns and every id of it has its image; returns the ids in the
    file's order. To `notes`, a line on the test folder's images the sample does not list (never predicted)."""
    c = read_competition(root)
    sample = read_sample(root, c)
    if PurePosixPath(c.test_images) == PurePosixPath(c.train_images) and c.label_kind != "folders":
        rows = read_labels(root, c)[0]
        listed_ids = set(sample[c.submission_id]) & set(rows["id"])
        labeled = listed_ids & set(rows["id"][rows["label"].str.strip() != ""])
        if listed_ids and not labeled:  # the test rows in the training CSV, unlabeled: a split column's layout
            raise PipelineError(f"{root / c.labels_csv}: lists the {len(listed_ids)} test ids of {c.sample_submission} "
                                f"too, with blank labels ({shown_names(listed_ids, c.image_suffix)}; the test rows of a "
                                "split column?); keep only the training rows in it")
        if labeled:  # one folder holds both sets (plant pathology): a test id may not be a training image
            raise PipelineError(f"{root / c.sample_submission}: {len(labeled)} of its ids are labeled in "
                                f"{c.labels_csv} too ({listed(sorted(labeled, key=id_sort_key), 5)}), the images of "
                                f"both sets being in {c.test_images}/, and a test image cannot be a training image: "
                                f"drop those rows from one of the two (the test rows of a split column in "
                                f"{c.labels_csv}?), or, where {DESCRIPTION} names one folder for both sets by mistake, "
                                "name each set's folder there")
    images = image_ids(root / c.test_images, c.image_suffix)
    if PurePosixPath(c.test_images) != PurePosixPath(c.train_images) and c.label_kind != "folders":
        check_not_swapped(root, c, images, labeled=set(read_labels(root, c)[0]["id"]),
                          tested=set(sample[c.submission_id]), test=True)
    missing = set(sample[c.submission_id]) - images
    if "" in missing:
        raise PipelineError(f"{root / c.sample_submission}: a row with an empty id (line "
                            f"{sample[c.submission_id].tolist().index('') + 2}); fix that row")
    pathlike = sorted(i for i in missing if "/" in i or "\\" in i)
    if pathlike:
        raise PipelineError(f"{root / c.sample_submission}: id(s) {listed(pathlike, 3)} hold a path separator, so they "
                            f"cannot name an image in {c.test_images}/; fix those rows")
    if missing:
        twins = near_misses(root / c.test_images, missing, c.image_suffix)
        unicode = [name for image_id, name in twins.items() if name.rpartition(".")[0] != image_id][:3]
        hint = suffix_hint(root, c, missing)
        raise PipelineError(f"{root / c.test_images}: {len(missing)} id(s) of {c.sample_submission} have no image: "
                            f"{shown_names(missing, c.image_suffix)}{hint}"
                            + (f"; {listed(unicode)} spell(s) an id in another Unicode form (composed or decomposed "
                               "accents): rename them as the CSV writes them" if unicode else "" if hint else
                               "; every id is predicted: add those images (a download: fetch it again with --force)"))
    separate = PurePosixPath(c.test_images) != PurePosixPath(c.train_images)
    unlisted = images - set(sample[c.submission_id]) if notes is not None and separate else set()
    if unlisted:
        notes.append(f"{c.test_images}/ holds {len(unlisted)} image(s) {c.sample_submission} does not list "
                     f"({shown_names(unlisted, c.image_suffix)}); only its {len(sample)} ids are predicted: if "
                     f"sample_submission names the wrong file, fix it in {root / DESCRIPTION}")
    return sample[c.submission_id].tolist()


def near_misses(folder: Path, missing: set[str], suffix: str) -> dict[str, str]:
    """For each of the `missing` ids whose image `folder` holds under another name, that file's name: another suffix
    (`1.PNG` for `1.png`) or another Unicode form of the same letters (`café` composed or decomposed); one listing."""
    if not missing or not folder.is_dir():
        return {}
    wanted = {unicodedata.normalize("NFC", f"{image_id}{suffix}"): image_id for image_id in missing}
    found = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            stem = entry.name.rpartition(".")[0]
            image_id = stem if stem in missing else wanted.get(unicodedata.normalize("NFC", entry.name))
            if image_id is not None:
                found[image_id] = entry.name
    return found


def suffix_hint(root: Path, c: Competition, missing: set[str]) -> str:
    """Where the missing images are there under another suffix (`1.png` for `1.PNG`): the description's
    image_suffix named, in words to add to the message; else nothing."""
    folder = root / c.test_images
    found = {path.name[len(image_id):] for image_id in sorted(missing)[:5]
             for path in folder.glob(f"{glob.escape(image_id)}.*") if path.name[len(image_id):] != c.image_suffix}
    if not found:
        return ""
    mixed = next(folder.glob(f"*{glob.escape(c.image_suffix)}"), None) is not None  # the described suffix is there too
    if mixed and {f.lower() for f in found} == {c.image_suffix.lower()}:  # 2.png beside 1.PNG: one suffix is read
        return (f"; the folder holds them as {', '.join(sorted(found))} files, beside {c.image_suffix} ones: give every "
                f"image one suffix, as written ({', '.join(sorted(found))} renamed {c.image_suffix})")
    return (f"; the folder holds them as {', '.join(sorted(found))} files: fix image_suffix ({c.image_suffix!r}) in "
            f"{root / DESCRIPTION}" if (root / DESCRIPTION).is_file() else f" (the folder holds {', '.join(sorted(found))} files)")


def check_not_swapped(root: Path, c: Competition, images: set[str], labeled: set[str], tested: set[str],
                      test: bool) -> None:
    """The `images` of the description's train folder (or, `test`, its test folder) being exactly the other set's
    ids — the test ids as training images, or the labeled ids as test images — is the two folders swapped."""
    if labeled == tested:  # the two sets' ids alone cannot tell the folders apart
        return
    if test and images == labeled and labeled <= image_ids(root / c.train_images, c.image_suffix):
        return  # the train folder holds its labeled images too: both sets share their ids (1 … N each), no swap
    if images == (labeled if test else tested):
        named, folder = ("test_images", c.test_images) if test else ("train_images", c.train_images)
        whose = f"the ids {c.labels_csv} labels" if test else f"the test ids of {c.sample_submission}"
        raise PipelineError(f"{root / DESCRIPTION}: {named} names {folder}/, which holds exactly {whose} "
                            f"({len(images)} images): are train_images and test_images swapped? Name each set's folder")


@dataclass(frozen=True)
class LabeledImages:
    image_dir: Path
    ids: list[str]
    targets: np.ndarray  # int64 class index per id
    classes: list[str]  # sorted label names; index = class number
    problems: list[str]  # rows left out and files not used (see `train_problems`)
    notes: list[str] = field(default_factory=list)  # labels read otherwise than written (`normalised_labels`)
    image_suffix: str = ".png"  # an id's file: image_dir/<id><image_suffix>
    image_size: int | None = None  # every image decoded to this square (competition.json's image_size)


def load_train_set(root: Path) -> LabeledImages:
    """The usable labeled training images in numeric id order, classes in sorted order, and the
    problems found on the way (the caller decides whether they stop it)."""
    labels, problems, notes = train_problems(root)
    c = read_competition(root)
    if labels.empty:
        columns = f"its id column {c.id_column!r}, label column(s) {', '.join(map(repr, c.label_columns))}" \
            if c.label_kind != "folders" else "its label_kind"
        described = f" Does {root / DESCRIPTION} name the right files and columns ({columns}, train_images " \
                    f"{c.train_images!r})?" if (root / DESCRIPTION).is_file() else ""
        raise PipelineError(problems_message(root, problems, "training data", "No usable labeled image is left."
                                             + described))
    labels = labels.iloc[sorted(range(len(labels)), key=lambda i: id_sort_key(labels["id"].iat[i]))]
    classes = sorted(labels["label"].unique())
    if len(classes) < 2:
        raise PipelineError(f"{root / c.labels_csv}: every usable row has the label {classes[0]!r}; a classifier "
                            "needs images of at least 2 classes")
    try:
        submitted_classes(c, classes, root)  # checked before any training, not when predicting
    except PipelineError as e:
        if not problems:
            raise
        raise PipelineError(problems_message(root, problems, "training data", f"Fix them: without those rows, {e}"))
    if (root / c.test_images).is_dir():  # the test set as predict will read it, before any training
        check_test(root)
    index = {name: i for i, name in enumerate(classes)}
    targets = labels["label"].map(index).to_numpy(dtype=np.int64)
    return LabeledImages(root / c.train_images, labels["id"].tolist(), targets, classes, problems, notes,
                         c.image_suffix, c.image_size)


def dataset_classes(root: Path) -> list[str] | None:
    """The sorted class names of the training labels (read as training reads them), None without that file."""
    labels = _dataset_labels(root)
    return None if labels is None else sorted(set(labels["label"][labels["label"] != ""]))


def labels_key(root: Path) -> str:
    """A digest of every labeled id with its label (read as training reads them), in id order: what a run records of
    the dataset it trained on, so that predicting with it on another is refused; "" without the labels."""
    labels = _dataset_labels(root)
    if labels is None:
        return ""
    rows = sorted(f"{image_id},{label}" for image_id, label in zip(labels["id"], labels["label"]))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def _dataset_labels(root: Path) -> pd.DataFrame | None:
    c = read_competition(root)
    if not (root / (c.train_images if c.label_kind == "folders" else c.labels_csv)).exists():
        return None
    labels = read_labels(root, c)[0]
    return labels.assign(label=normalised_labels(labels["label"], c.label_kind)[0])


def check_train(root: Path) -> LabeledImages:
    """The labeled images of a layout that must be whole (a fetched competition): any problem is an error."""
    data = load_train_set(root)
    if data.problems:
        raise PipelineError(problems_message(root, data.problems, "training data", "Fix them, or fetch again."))
    return data


def class_difference(model: list[str], dataset: list[str], dataset_root: Path) -> str:
    """How a model's classes differ from the dataset's training labels, e.g. `trained on 10 classes, trainLabels.csv
    has 10: only the model has truck; only trainLabels.csv has lorry`."""
    c = read_competition(dataset_root)
    labels = c.labels_csv or f"{c.train_images}/"  # class folders: the folder of them
    return (f"trained on {len(model)} classes, {dataset_root / labels} has {len(dataset)}"
            + classes_apart(model, dataset, labels))


def classes_apart(model: list[str], dataset: list[str], dataset_name: str) -> str:
    """`; only the model has truck; only <dataset_name> has lorry`, or `; the same classes in another order`."""
    def names(only: list[str]) -> str:
        return listed(only[:5]) + (f" and {len(only) - 5} more" if len(only) > 5 else "")
    only_model = [c for c in model if c not in dataset]
    only_data = [c for c in dataset if c not in model]
    if not only_model and not only_data and model != dataset:
        return "; the same classes in another order"
    return ((f"; only the model has {names(only_model)}" if only_model else "")
            + (f"; only {dataset_name} has {names(only_data)}" if only_data else ""))
