"""The per-image baseline the benchmarks measure the pipeline against (and tests keep honest): PNGs decoded
with PIL one by one in DataLoader workers, torchvision transforms, the CIFAR-10 statistics."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from pipeline.errors import PipelineError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def train_transform(size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    """The baseline augmentation: RandomCrop(size, padding=4), RandomHorizontalFlip, Normalize."""
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
