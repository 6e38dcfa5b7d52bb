"""Pixel-CSV datasets (a `label` column, then one column per pixel, as Kaggle's Fashion-MNIST ships)
laid out as a competition: `train/<id>.png` (greyscale), `trainLabels.csv` with class names, `test/`,
`sampleSubmission.csv`, and the test labels kept aside as `solution.csv`."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pipeline.errors import PipelineError, listed
from pipeline.competition import SAMPLE_SUBMISSION, SOLUTION, TRAIN_LABELS, pixel_columns, sample_named

# Class names of the datasets whose CSVs carry numbers; other datasets keep their labels as written.
CLASS_NAMES = {
    "zalando-research/fashionmnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                      "Sneaker", "Bag", "Ankle boot"],
}


def find_split_csv(folder: Path, split: str) -> Path:
    found = sorted(p for p in folder.rglob("*.csv") if split in p.name.lower())
    if len(found) != 1:
        listed = ", ".join(p.name for p in sorted(folder.rglob("*.csv"))) or "none"
        raise PipelineError(f"{folder}: expected one {split} CSV of label + pixels, found {len(found)} (CSVs: {listed})")
    return found[0]


def read_pixel_csv(path: Path, need_label: bool = True) -> tuple[np.ndarray | None, np.ndarray, list[str]]:
    """(labels, uint8 images N×S×S, ids) from a CSV with a `label` column, S×S pixel columns and perhaps an id column
    (Kannada-MNIST's test.csv `id`; else the ids are the rows' numbers from 1); a test CSV may have no labels: None."""
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise PipelineError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None
    frame.columns = [str(column).strip() for column in frame.columns]
    frame = frame.rename(columns={c: "label" for c in frame.columns if c.lower() == "label"})  # Label, LABEL
    if "label" not in frame.columns and need_label:
        raise PipelineError(f"{path}: no 'label' column (columns start {', '.join(map(str, frame.columns[:3]))})")
    ids = _row_ids(path, frame)
    pixels = frame.drop(columns=["label", *([frame.columns[0]] if ids is not None else [])], errors="ignore")
    named = [column for column in pixels.columns if str(column).lower().startswith("pixel")]
    if named and len(named) < pixels.shape[1]:
        others = [str(column) for column in pixels.columns if column not in named]
        raise PipelineError(f"{path}: the column(s) {', '.join(map(repr, others[:5]))} are neither 'label' nor pixels "
                            "(pixel…); a pixel CSV holds a label and pixel columns, and perhaps the ids in its first "
                            "column (named id, ImageId, …): remove the others")
    side = math.isqrt(pixels.shape[1])
    if side * side != pixels.shape[1] or side == 0:
        raise PipelineError(f"{path}: {pixels.shape[1]} pixel columns do not make a square greyscale image")
    pixels = pixels[_in_pixel_order(path, [str(column) for column in pixels.columns], side)]
    values = pixels.to_numpy()
    if not np.issubdtype(values.dtype, np.integer) or values.min(initial=0) < 0 or values.max(initial=0) > 255:
        raise PipelineError(f"{path}: {_bad_pixel(pixels)}; pixel values must be whole numbers from 0 to 255: fix them")
    labels = frame["label"].to_numpy() if "label" in frame.columns else None
    return labels, values.astype(np.uint8).reshape(-1, side, side), ids or [str(i) for i in range(1, len(frame) + 1)]


def _row_ids(path: Path, frame: pd.DataFrame) -> list[str] | None:
    """The ids in a pixel CSV's first column when it is named for them (id, ImageId, image_id), each once and fit to
    name a file; None where it holds no ids."""
    first = frame.columns[0]
    if first == "label" or not re.search(r"id$", first, re.IGNORECASE):
        return None
    ids = frame[first].astype(str).str.strip().tolist()
    repeated = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) < len(ids) else []
    odd = [i for i in ids if i in ("", ".", "..", "nan") or "/" in i or "\\" in i]
    if repeated or odd:
        raise PipelineError(f"{path}: its {first!r} column " + (f"repeats ids ({listed(repeated, 3)})" if repeated else
                            f"holds {odd[0]!r}, which names no file") + "; each row's id must be its own: fix them")
    return ids


def _in_pixel_order(path: Path, columns: list[str], side: int) -> list[str]:
    """The pixel columns in row-major order, by the numbers in their names: `pixel0` … (or from `pixel1`, as
    Fashion-MNIST numbers them), `1x1` … `28x28` (row x column), or bare numbers; a CSV whose columns were sorted as
    text (pixel0, pixel1, pixel10, …) or shuffled is read by name, never by position. Names that number no pixel
    order (a gap, a repeat, a pixel column without its number) are one line."""
    patterns = (r"pixel_?(\d+)", r"(\d+)x(\d+)", r"(\d+)")
    for pattern in patterns:
        found = [re.fullmatch(pattern, column, re.IGNORECASE) for column in columns]
        if all(found):
            keys = [tuple(int(g) for g in match.groups()) for match in found]
            break
    else:
        if not any(column.lower().startswith("pixel") for column in columns):
            return columns  # unnumbered: taken in the file's order
        unnumbered = [c for c in columns if not re.fullmatch(patterns[0], c, re.IGNORECASE)]
        raise PipelineError(f"{path}: pixel columns such as {listed(unnumbered, 3)} carry no pixel number (pixel0, "
                            "pixel1, …), so their order cannot be told; name them so")
    if len(keys[0]) == 2:
        first = min(keys)
        keys = [((row - first[0]) * side + column - first[1],) for row, column in keys]
    numbers = sorted(k[0] for k in keys)
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))) or numbers[0] not in (0, 1):
        raise PipelineError(f"{path}: the pixel columns' numbers are not 0 … {len(columns) - 1} (or 1 … "
                            f"{len(columns)}), each once, so their order cannot be told; name them so")
    return [column for _, column in sorted(zip(keys, columns))]


def _bad_pixel(pixels: pd.DataFrame) -> str:
    """Where the first cell that is not a pixel value (a whole number from 0 to 255) is, and how many there are."""
    numbers = pixels.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(numbers) | (numbers < 0) | (numbers > 255) | (numbers % 1 != 0)
    row, column = np.argwhere(bad)[0]
    value = pixels.iat[row, column]
    shown = "a blank" if pd.isna(value) else repr(value.item() if hasattr(value, "item") else value)
    return f"line {row + 2}, column {pixels.columns[column]} holds {shown} ({int(bad.sum())} such cell(s))"


def _write_pngs(folder: Path, images: np.ndarray, ids: list[str]) -> None:
    folder.mkdir(parents=True)
    for image_id, image in zip(ids, images):
        Image.fromarray(image, mode="L").save(folder / f"{image_id}.png", compress_level=1)


def is_pixel_competition(folder: Path) -> bool:
    """The competition extracted in `folder` keeps its images as rows of pixel CSVs (digit-recognizer): its train
    CSV's columns are mostly `pixel…`."""
    for path in sorted(folder.glob("*.csv")):
        if "train" in path.name.lower():
            try:
                columns = pd.read_csv(path, nrows=0).columns
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
                return False  # describing the competition reports the unreadable file
            return pixel_columns(list(columns))
    return False


def convert_pixel_competition(folder: Path, competition: str) -> None:
    """Lay out a pixel-CSV competition's train and test CSVs as images in `folder`, beside its own sample
    submission, whose ids are the test rows' numbers from 1 (digit-recognizer's ImageId)."""
    raw = folder / ".raw"
    raw.mkdir()
    for split in ("train", "test"):
        found = find_split_csv(folder, split)
        found.rename(raw / found.name)
    convert_pixel_dataset(raw, folder, competition, sample=False)
    for path in raw.iterdir():
        path.unlink()
    raw.rmdir()


def convert_pixel_dataset(raw: Path, dest: Path, dataset: str, sample: bool = True) -> None:
    """Lay out the train and test CSVs found under `raw` as a competition in `dest` (with a sample submission of
    `id,label` unless not `sample`)."""
    try:  # the CSVs named as the archive holds them, not by the folder they are read in
        train_labels, train_images, train_ids = read_pixel_csv(find_split_csv(raw, "train"))
        test_labels, test_images, test_ids = read_pixel_csv(find_split_csv(raw, "test"), need_label=False)
    except PipelineError as e:
        raise PipelineError(str(e).replace(f"{raw}/", f"{raw.parent}/")) from None
    if train_images.shape[1:] != test_images.shape[1:]:
        raise PipelineError(f"{raw}: train images are {train_images.shape[1]}² pixels, test images {test_images.shape[1]}²")
    names = CLASS_NAMES.get(dataset)
    labels = [train_labels] + ([test_labels] if test_labels is not None else [])
    if names is not None:
        unknown = sorted(set(np.concatenate(labels).tolist()) - set(range(len(names))))
        if unknown:
            raise PipelineError(f"{raw}: labels {unknown[:3]} are not among {dataset}'s {len(names)} classes")
        named = [np.array(names)[values] for values in labels]
    else:
        named = [values.astype(str) for values in labels]
    train_names = named[0]
    _write_pngs(dest / "train", train_images, train_ids)
    _write_pngs(dest / "test", test_images, test_ids)
    pd.DataFrame({"id": train_ids, "label": train_names}).to_csv(dest / TRAIN_LABELS, index=False)
    if sample:
        pd.DataFrame({"id": test_ids, "label": sorted(set(train_names))[0]}).to_csv(dest / SAMPLE_SUBMISSION,
                                                                                    index=False)
    if test_labels is not None:  # headed as the competition's own sample is, so that --score reads it
        header = _sample_header(dest) if not sample else ["id", "label"]
        pd.DataFrame({header[0]: test_ids, header[1]: named[1]}).to_csv(dest / SOLUTION, index=False)


def _sample_header(folder: Path) -> list[str]:
    """The id and label columns of the sample submission in `folder` (digit-recognizer's ImageId,Label), else
    id,label."""
    samples = [p for p in sorted(folder.glob("*.csv")) if sample_named(p.name)]
    try:
        columns = list(pd.read_csv(samples[0], nrows=0).columns) if len(samples) == 1 else []
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        columns = []  # describing the competition reports the unreadable sample
    return columns[:2] if len(columns) >= 2 else ["id", "label"]
