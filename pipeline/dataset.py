"""Torch Datasets over the competition layout: the labeled set, its seeded split, augmentation."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset
from torchvision.transforms import v2

from pipeline.errors import PipelineError
from pipeline.layout import check_train, id_sort_key

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class LabeledImages:
    image_dir: Path
    ids: list[str]
    targets: np.ndarray  # int64 class index per id
    classes: list[str]  # sorted label names; index = class number


def load_train_set(root: Path, limit: int | None = None) -> LabeledImages:
    """The labeled training images in numeric id order; `limit` keeps the first N of them."""
    labels = check_train(root)
    labels = labels.iloc[sorted(range(len(labels)), key=lambda i: id_sort_key(labels["id"].iat[i]))]
    if limit is not None:
        labels = labels.iloc[:limit]
    classes = sorted(labels["label"].unique())
    index = {name: i for i, name in enumerate(classes)}
    targets = labels["label"].map(index).to_numpy(dtype=np.int64)
    return LabeledImages(root / "train", labels["id"].tolist(), targets, classes)


def stratified_split(targets: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint, class-stratified train/val indices, the same for the same seed."""
    if not 0 < val_fraction < 1:
        raise PipelineError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    try:
        train_idx, val_idx = train_test_split(
            np.arange(len(targets)), test_size=val_fraction, stratify=targets, random_state=seed
        )
    except ValueError as e:
        raise PipelineError(f"cannot split {len(targets)} images into train/val by class: {e}") from None
    return np.sort(train_idx), np.sort(val_idx)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of one image."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except OSError as e:
        raise PipelineError(f"{path}: not a readable image ({e})") from None


def train_transform(size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    """Seed 004's augmentation: RandomCrop(size, padding=4), RandomHorizontalFlip, Normalize."""
    return v2.Compose([
        v2.PILToTensor(),
        v2.RandomCrop(size, padding=4),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])


def eval_transform(mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    return v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


class PngDataset(Dataset):
    """`folder/<id>.png` images as RGB tensors, with their class index (or -1 when unlabeled)."""

    def __init__(self, folder: Path, ids: list[str], targets: np.ndarray | None, transform: v2.Compose):
        self.folder = folder
        self.ids = ids
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path = self.folder / f"{self.ids[i]}.png"
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except OSError as e:
            raise PipelineError(f"{path}: not a readable image ({e})") from None
        target = -1 if self.targets is None else int(self.targets[i])
        return self.transform(rgb), target
