"""Augmentation as batched tensor ops on the device holding the data (airbench-style).

A `BatchLoader` keeps a whole split as uint8 (N, C, H, W) on its device and yields normalized,
augmented batches: no per-image Python, no worker processes. Every random draw comes from one CPU
generator, so a given (seed, epoch) gives the same batches on any device.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Policy:
    pad: int = 4  # random crop of the original size from the image zero-padded by `pad`
    flip: bool = True
    cutout: float = 0.0  # side of the erased square, as a fraction of the image side (0: none)


BATCHED_POLICIES = {
    "none": Policy(pad=0, flip=False),
    "crop-flip": Policy(),  # RandomCrop(size, padding=4) + RandomHorizontalFlip
    "cutout": Policy(cutout=0.5),  # + Cutout (DeVries & Taylor 2017: 16 px on CIFAR-10)
}


def random_crop(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Per-image random crops of (H, W) from the batch zero-padded by `pad` on each side."""
    n, _, h, w = images.shape
    shifts = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(images.device)
    rows = (shifts[0][:, None] + torch.arange(h, device=images.device))[:, :, None]
    cols = (shifts[1][:, None] + torch.arange(w, device=images.device))[:, None, :]
    padded = F.pad(images, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # N, H+2p, W+2p, C
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded[batch, rows, cols].permute(0, 3, 1, 2)


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = (torch.rand(len(images), generator=generator) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def cutout(images: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Zero one square per image, its centre anywhere in the image (the square may be clipped)."""
    n, _, h, w = images.shape
    size_h, size_w = max(1, round(h * fraction)), max(1, round(w * fraction))
    centres = torch.rand(2, n, generator=generator).to(images.device)
    top = (centres[0] * h).long() - size_h // 2
    left = (centres[1] * w).long() - size_w // 2
    ys = torch.arange(h, device=images.device)[None, :]
    xs = torch.arange(w, device=images.device)[None, :]
    inside_rows = (ys >= top[:, None]) & (ys < top[:, None] + size_h)
    inside_cols = (xs >= left[:, None]) & (xs < left[:, None] + size_w)
    erased = inside_rows[:, :, None] & inside_cols[:, None, :]
    return images.masked_fill(erased[:, None], 0)


def resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Float batch resized to size×size (bilinear; antialiased when shrinking); None keeps it."""
    if size is None or images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < images.shape[-1])


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) with `channels` channels: grey from RGB by ITU-R 601 luma (as PIL's "L"),
    RGB from grey by repetition."""
    if images.shape[1] == channels:
        return images
    if channels == 1 and images.shape[1] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114], device=images.device)[None, :, None, None]
        return (images.float() * weights).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    if channels == 3 and images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    raise ValueError(f"cannot turn {images.shape[1]}-channel images into {channels}-channel ones")


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """uint8 (N, C, H, W) to float, standardized per channel."""
    out = images.float().div_(255).sub_(mean[:, None, None]).div_(std[:, None, None])
    return out.contiguous(memory_format=memory_format)


class BatchLoader:
    """Batches (images, targets) of a uint8 (N, C, H, W) split held on one device.

    `generator=None` gives the split in order with no augmentation (evaluation); otherwise each
    pass over it draws a permutation and the policy's augmentations from that generator.
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, batch_size: int,
                 mean: tuple[float, ...], std: tuple[float, ...], policy: Policy | None = None,
                 generator: torch.Generator | None = None,
                 memory_format: torch.memory_format = torch.contiguous_format, img_size: int | None = None,
                 shard: tuple[int, int] = (0, 1)):
        self.images, self.targets = images, targets
        self.img_size = img_size
        self.rank, self.world = shard  # this process takes images rank, rank + world, … of every batch
        self.batch_size = batch_size
        self.mean = torch.tensor(mean, device=images.device)
        self.std = torch.tensor(std, device=images.device)
        self.policy = policy
        self.generator = generator
        self.memory_format = memory_format  # channels_last pays on CUDA; on CPU it was slower here

    def __len__(self) -> int:
        n, full = len(self.images), len(self.images) // self.batch_size
        # a tail that cannot give every rank 2 images is dropped: BatchNorm cannot train on a batch of 1
        return full + (1 if n % self.batch_size >= 2 * self.world else 0)

    def __iter__(self):
        n = len(self.images)
        order = torch.randperm(n, generator=self.generator) if self.generator is not None else torch.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size].to(self.images.device)
            # the whole batch draws its augmentation, so N processes see exactly what one process sees
            images, targets = self.augment(self.images[index]), self.targets[index]
            if self.world > 1:
                images, targets = images[self.rank::self.world], targets[self.rank::self.world]
            yield images, targets

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """Crop and flip as uint8, normalize, cut out (erased pixels become the mean, as in Cutout), resize."""
        policy = self.policy if self.generator is not None else None
        if policy and policy.pad:
            images = random_crop(images, policy.pad, self.generator)
        if policy and policy.flip:
            images = random_flip(images, self.generator)
        images = normalize(images, self.mean, self.std, self.memory_format)
        if policy and policy.cutout:
            images = cutout(images, policy.cutout, self.generator)
        return resize(images, self.img_size).contiguous(memory_format=self.memory_format)


def to_device_tensor(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, C) images (a host array, or a tensor anywhere) as a uint8 (N, C, H, W) tensor on `device`."""
    if isinstance(images, torch.Tensor):
        return images.to(device).permute(0, 3, 1, 2).contiguous()
    host = np.require(images, requirements=["C_CONTIGUOUS", "WRITEABLE"])  # copies a read-only memory map
    return torch.from_numpy(host).to(device).permute(0, 3, 1, 2).contiguous()
