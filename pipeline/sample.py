"""An offline sample competition in the `cifar-10` layout: ten learnable classes of 32×32 PNGs.

Each class is a shape (disc, square, ring, cross, triangle) in a warm or a cool colour, drawn at a
random place and size on a random noisy background, so a model must learn both shape and colour,
and the classes survive random crops and horizontal flips.
"""
from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pipeline.competition import SAMPLE_SUBMISSION, SOLUTION, TRAIN_LABELS

SHAPES = ("disc", "square", "ring", "cross", "triangle")
PALETTES = {"warm": (-0.08, 0.12), "cool": (0.45, 0.70)}  # hue ranges
CLASSES = [f"{shape}-{palette}" for shape in SHAPES for palette in PALETTES]
SIZE = 32


def _shape_masks(shape_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(shape_ids)
    r = rng.uniform(7, 12, (n, 1, 1))
    cy, cx = rng.uniform(10, SIZE - 10, (2, n, 1, 1))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    dy, dx = yy - cy, xx - cx
    dist = np.hypot(dx, dy)
    masks = np.stack([
        dist <= r,
        np.maximum(abs(dx), abs(dy)) <= 0.8 * r,
        (dist <= r) & (dist >= 0.55 * r),
        ((abs(dx) <= 0.3 * r) & (abs(dy) <= r)) | ((abs(dy) <= 0.3 * r) & (abs(dx) <= r)),
        (abs(dx) <= (dy + r) / 2) & (dy <= 0.7 * r),
    ])
    return masks[shape_ids, np.arange(n)]


def _colours(hues: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    return np.array([colorsys.hsv_to_rgb(h % 1.0, s, v) for h, s, v in zip(hues, saturation, value)]) * 255


def make_images(targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 images (N, 32, 32, 3) of the given class indices."""
    n = len(targets)
    shape_ids, palette_ids = np.divmod(targets, len(PALETTES))
    hue_ranges = np.array(list(PALETTES.values()))[palette_ids]
    foreground = _colours(rng.uniform(hue_ranges[:, 0], hue_ranges[:, 1]), rng.uniform(0.6, 1, n), rng.uniform(0.6, 1, n))
    background = _colours(rng.uniform(0, 1, n), rng.uniform(0, 0.35, n), rng.uniform(0.15, 0.85, n))
    gradient = np.linspace(-1, 1, SIZE)[None, :, None, None] * rng.uniform(-30, 30, (n, 1, 1, 1))
    masks = _shape_masks(shape_ids, rng)[..., None]
    images = np.where(masks, foreground[:, None, None], background[:, None, None] + gradient)
    images = images + rng.normal(0, 12, images.shape)
    return np.clip(images, 0, 255).astype(np.uint8)


def _write_split(folder: Path, ids: np.ndarray, images: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for image_id, image in zip(ids, images):
        Image.fromarray(image).save(folder / f"{image_id}.png")


def write_sample(dest: Path, n_train: int = 3000, n_test: int = 1000, seed: int = 0) -> None:
    """Write train/, test/, trainLabels.csv, sampleSubmission.csv and solution.csv under `dest`."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        targets = rng.permutation(np.arange(n) % len(CLASSES))
        ids = np.arange(1, n + 1)
        _write_split(dest / split, ids, make_images(targets, rng))
        splits[split] = pd.DataFrame({"id": ids, "label": np.array(CLASSES)[targets]})
    splits["train"].to_csv(dest / TRAIN_LABELS, index=False)
    splits["test"].to_csv(dest / SOLUTION, index=False)
    splits["test"].assign(label=CLASSES[0]).to_csv(dest / SAMPLE_SUBMISSION, index=False)
