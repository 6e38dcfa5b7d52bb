"""Small Kaggle-shaped competitions built on the fly for the tests."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import py7zr
from PIL import Image

# Deliberately not the sample's classes: behaviour must not depend on them.
CLASSES = ("zebra", "apple", "kiwi", "mango")


def class_images(targets: np.ndarray, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Each class a colour (one bright channel, or none) plus heavy noise: learnable in a few epochs."""
    base = np.full((len(targets), 3), 70.0)
    for i, t in enumerate(targets):
        if t < 3:
            base[i, t] = 200.0
    images = base[:, None, None, :] + rng.normal(0, 40, (len(targets), size, size, 3))
    return np.clip(images, 0, 255).astype(np.uint8)


def grey_class_images(targets: np.ndarray, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """Greyscale (N, H, W): each class a brightness, plus noise."""
    images = 50.0 + 45.0 * targets[:, None, None] + rng.normal(0, 25, (len(targets), size, size))
    return np.clip(images, 0, 255).astype(np.uint8)


def write_competition(root: Path, n_train: int = 400, n_test: int = 40, seed: int = 0, size: int = 32,
                      classes: tuple[str, ...] = CLASSES, grey: bool = False) -> dict:
    """train/, test/, trainLabels.csv (ids in shuffled order), sampleSubmission.csv, solution.csv;
    `grey` writes 1-channel PNGs."""
    rng = np.random.default_rng(seed)
    train_targets = np.arange(n_train) % len(classes)
    test_targets = rng.integers(0, len(classes), n_test)
    train_ids = rng.permutation(n_train) + 1
    test_ids = np.arange(1, n_test + 1)
    for folder, ids, targets in (("train", train_ids, train_targets), ("test", test_ids, test_targets)):
        (root / folder).mkdir(parents=True)
        for image_id, image in zip(ids, (grey_class_images if grey else class_images)(targets, rng, size)):
            Image.fromarray(image).save(root / folder / f"{image_id}.png")
    names = np.array(classes)
    pd.DataFrame({"id": train_ids, "label": names[train_targets]}).to_csv(root / "trainLabels.csv", index=False)
    pd.DataFrame({"id": test_ids, "label": classes[0]}).to_csv(root / "sampleSubmission.csv", index=False)
    pd.DataFrame({"id": test_ids, "label": names[test_targets]}).to_csv(root / "solution.csv", index=False)
    return {"train": n_train, "test": n_test}


def kaggle_zip(competition: Path, out: Path) -> Path:
    """The zip Kaggle serves: train.7z and test.7z (each holding its folder) beside the two CSVs."""
    with zipfile.ZipFile(out, "w") as z:
        for name in ("train", "test"):
            archive = out.parent / f"{name}.7z"
            with py7zr.SevenZipFile(archive, "w") as sz:
                sz.writeall(competition / name, name)
            z.write(archive, archive.name)
            archive.unlink()
        for csv in ("trainLabels.csv", "sampleSubmission.csv"):
            z.write(competition / csv, csv)
    return out
