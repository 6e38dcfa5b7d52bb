"""The labeled set as arrays (one entry point), its seeded split, and per-image augmentation for workers."""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from rich.console import Console
from sklearn.model_selection import StratifiedKFold, train_test_split
from torch.utils.data import Dataset

from pipeline.cache import cached_train_images, image_problems
from pipeline.errors import PipelineError
from pipeline.competition import DESCRIPTION, LONE_CLASSES_FROM, read_competition
from pipeline.layout import load_train_set, problems_message

if TYPE_CHECKING:
    import albumentations


def stratified_split(targets: np.ndarray, val_fraction: float, seed: int,
                     classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint, class-stratified train/val indices, the same for the same seed; too few images for such a
    split is one line naming the classes (`classes`: the names of the target indices)."""
    if not 0 < val_fraction < 1:
        raise PipelineError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    counts = np.bincount(targets)
    present = np.flatnonzero(counts)
    names = classes or [str(c) for c in range(len(counts))]
    val = math.ceil(len(targets) * val_fraction)  # scikit-learn's rounding of test_size
    single = [names[c] for c in present if counts[c] < 2]
    if single or val < len(present) or len(targets) - val < len(present):
        why = (f"class(es) {', '.join(map(repr, single[:5]))} have a single image (if no such class is meant, "
               "fix its rows in the training labels: a mistyped or cut-off label?)" if single else
               f"{val} val and {len(targets) - val} train images cannot each hold one image of every class")
        raise PipelineError(f"cannot split {len(targets)} images of {len(present)} classes into a stratified "
                            f"{val_fraction:g} val split: {why}; use more images (raise or drop --limit), "
                            "or --full to train on all of them without validation")
    try:
        train_idx, val_idx = train_test_split(np.arange(len(targets)), test_size=val_fraction, stratify=targets,
                                              random_state=seed)
    except ValueError as e:
        raise PipelineError(f"cannot split {len(targets)} images into train/val by class: {e}") from None
    return np.sort(train_idx), np.sort(val_idx)


@dataclass(frozen=True)
class TrainArrays:
    classes: list[str]
    images: np.ndarray  # uint8 (N, H, W, C), ids in numeric order
    targets: np.ndarray
    skipped: list[str]  # with --skip-bad: the problems whose files or rows were left out
    labeled_ids: str = ""  # digest of the ids, labels and pixels used, in order (`training_digest`)
    ids: list[str] = field(default_factory=list)  # each image's id




def limited(targets: np.ndarray, limit: int, classes: list[str]) -> np.ndarray:
    """The indices of `limit` images (--limit), in order: each class's first ones, as many as its share of the set
    (largest remainders), so that a set laid out class by class (class folders) keeps every class; a limit leaving a
    class without an image is one line."""
    counts = np.bincount(targets, minlength=len(classes))
    shares = counts * limit / len(targets)
    quota = np.floor(shares).astype(int)
    quota[np.argsort(quota - shares, kind="stable")[:limit - quota.sum()]] += 1
    missing = [classes[c] for c in np.flatnonzero((quota == 0) & (counts > 0))]
    if missing:
        raise PipelineError(f"--limit {limit} leaves class(es) {', '.join(map(repr, missing[:5]))} without an image "
                            f"({np.count_nonzero(counts)} classes); raise it, to {np.count_nonzero(counts) * 5} at least "
                            "for a 0.2 val split of every class (--val-fraction; --full: 2 per class), or drop it")
    return np.sort(np.concatenate([np.flatnonzero(targets == c)[:quota[c]] for c in range(len(classes))]))


def training_arrays(root: Path, skip_bad: bool = False, limit: int | None = None,
                    console: Console | None = None) -> TrainArrays:
    """The labeled images as arrays, every problem of the training data (CSV rows, missing or unused
    files, unreadable images, wrong size or mode) listed in one error before any training, or with
    `skip_bad` left out; then `limit` of them, every class in its share (`limited`)."""
    data = load_train_set(root)
    if data.notes and console is not None:
        console.print(f"{root / read_competition(root).labels_csv}: label spellings: {'; '.join(data.notes)}")
    decoded = cached_train_images(root, data, console)
    problems = data.problems + image_problems(data.image_dir, decoded.bad, data.image_suffix)
    usable = len(data.ids) - len(decoded.bad)
    if problems and (not skip_bad or len(problems) > usable):
        described = read_competition(root)
        advice = "Fix them, or pass --skip-bad to train on the rest." if len(problems) <= usable else (
            f"That is more problems than usable labeled images ({usable}): --skip-bad leaves out a few bad files, not "
            f"most of the data. Does {root / DESCRIPTION if (root / DESCRIPTION).is_file() else 'the dataset'} name "
            f"the training labels ({described.labels_csv}) and images ({described.train_images}/)?")
        raise PipelineError(problems_message(root, problems, "training data", advice))
    images, targets, ids = decoded.images, data.targets, data.ids
    if decoded.bad:
        keep = np.array([image_id not in decoded.bad for image_id in data.ids])
        images, targets, ids = images[keep], targets[keep], [i for i, k in zip(ids, keep) if k]
    if limit is not None and limit < len(ids):
        keep = limited(targets, limit, data.classes)
        images, targets, ids = images[keep], targets[keep], [ids[i] for i in keep]
    if not len(ids):
        raise PipelineError(problems_message(root, problems, "training data", "No usable labeled image is left."))
    if len(ids) >= LONE_CLASSES_FROM and len(data.classes) == len(data.ids):
        described = read_competition(root)
        raise PipelineError(f"{root / described.labels_csv}: each of its {len(data.ids)} labels names one image only "
                            f"(every image a class of its own); does {DESCRIPTION} name its label column "
                            f"(label_columns {list(described.label_columns)})? Fix it, or the labels")
    if len(np.unique(targets)) < 2:
        raise PipelineError(f"{root}: the {len(ids)} images used (--limit, --skip-bad) are all of class "
                            f"{data.classes[targets[0]]!r}; a classifier needs images of at least 2 classes")
    return TrainArrays(data.classes, images, targets, problems, training_digest(ids, targets, data.classes, images), ids)


def training_digest(ids: list[str], targets: np.ndarray, classes: list[str], images: np.ndarray) -> str:
    """A digest of what a run trains on: each id with its label and its decoded pixels (sha256 reads about a
    gigabyte a second: 0.1 s for CIFAR-10's 50,000 images)."""
    digest = hashlib.sha256("\n".join(f"{i},{classes[t]}" for i, t in zip(ids, targets)).encode())
    digest.update(str(images.shape).encode())
    for start in range(0, len(images), 4096):
        digest.update(np.ascontiguousarray(images[start:start + 4096]).data)
    return digest.hexdigest()


def check_decoded_size(trained: list[int], data: TrainArrays, root: Path, who: object) -> None:
    """The labeled images decode at the size `who` trained on them (`trained`: its recorded height and width), else
    one line naming image_size: the pixels, and so the labeled set, would be others."""
    if trained and list(trained) != list(data.images.shape[1:3]):
        height, width = data.images.shape[1:3]
        raise PipelineError(f"{root / DESCRIPTION}: its image_size decodes the images at {width}×{height}, but {who} "
                            f"trained on them at {trained[1]}×{trained[0]}; set image_size as it was ({trained[0]}, or "
                            "null where that is the images' own size), or start a new run")


def image_hashes(images: np.ndarray) -> np.ndarray:
    """A 64-bit digest of each image's decoded pixels: what a checkpoint records of the images its weights trained on,
    which the same images still match under other labels, classes or ids."""
    return np.array([int.from_bytes(hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=8).digest(), "little",
                                    signed=True) for image in images], dtype=np.int64)


def run_split(targets: np.ndarray, val_fraction: float, seed: int, full: bool,
              classes: list[str] | None = None, folds: int | None = None,
              fold: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A run's (train, val) indices: the seeded stratified split, fold `fold` of a seeded stratified K-fold split
    (val: that fold), or every image for training with --full."""
    if full:
        return np.arange(len(targets)), np.arange(0)
    if folds is not None:
        return fold_split(targets, folds, fold, seed, classes)
    return stratified_split(targets, val_fraction, seed, classes)


def fold_split(targets: np.ndarray, folds: int, fold: int, seed: int,
               classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's StratifiedKFold(folds, shuffle, seed): fold `fold`'s (train, val) indices. Every image is in
    exactly one fold's val; a class with fewer images than folds is one line naming it."""
    counts = np.bincount(targets)
    names = classes or [str(c) for c in range(len(counts))]
    short = [f"{names[c]!r} ({counts[c]})" for c in np.flatnonzero(counts) if counts[c] < folds]
    if short:
        raise PipelineError(f"cannot split {len(targets)} images into {folds} stratified folds: class(es) "
                            f"{', '.join(short[:5])} have fewer images than folds; use fewer --folds or more images")
    splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(targets)), targets)
    train_idx, val_idx = list(splits)[fold]
    return np.sort(train_idx), np.sort(val_idx)


def albumentations_policy(name: str, mean: tuple[float, ...], std: tuple[float, ...],
                          img_size: int | None = None) -> albumentations.Compose:
    """Per-image policies for DataLoader workers, by name (colour jitter only for RGB). albumentations is
    imported here, for the runs that use it."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # its import would ask PyPI for a newer release
    import albumentations as A
    from albumentations.pytorch import ToTensorV2

    if name != "albu-strong":
        raise PipelineError(f"no albumentations policy named {name!r}")
    colour = [A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=0.5)] if len(mean) == 3 else [
        A.RandomBrightnessContrast(0.3, 0.3, p=0.5)]
    return A.Compose([
        A.HorizontalFlip(p=0.5),
        A.Affine(translate_percent=(-0.125, 0.125), scale=(0.9, 1.1), rotate=(-15, 15), p=0.8),
        *colour,
        A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.25, 0.5), hole_width_range=(0.25, 0.5), p=0.5),
        *([A.Resize(img_size, img_size)] if img_size else []),
        A.Normalize(mean=mean, std=std, max_pixel_value=255.0),
        ToTensorV2(),
    ])


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (in [0, 1]) of uint8 (N, H, W, C) images, read in chunks."""
    total = np.zeros(images.shape[-1])
    squares = np.zeros(images.shape[-1])
    for start in range(0, len(images), chunk):
        block = np.asarray(images[start:start + chunk], dtype=np.float64) / 255
        total += block.sum(axis=(0, 1, 2))
        squares += np.square(block).sum(axis=(0, 1, 2))
    count = len(images) * images.shape[1] * images.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0))
    std = np.where(std < 1e-3, 1.0, std)  # a channel of one value throughout (blue always 0) is centred, not scaled
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


class ArrayDataset(Dataset):
    """Decoded uint8 (N, H, W, C) images through a per-image albumentations transform."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, transform: albumentations.Compose):
        self.images, self.targets, self.transform = images, targets, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        target = self.targets[i]  # a class, or a row of `teach.Teaching`'s targets
        return self.transform(image=np.asarray(self.images[i]))["image"], \
            torch.from_numpy(target) if target.ndim else int(target)


def seed_worker_augmentation(worker_id: int) -> None:
    """Seed a worker's albumentations from the DataLoader's per-worker seed, so epochs are reproducible."""
    info = torch.utils.data.get_worker_info()
    info.dataset.transform.set_random_seed(info.seed % 2**32)
