"""Test helpers: small Kaggle-shaped competitions built on the fly, the quick training options, the CLI
runner, and run folders fabricated without training."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from pipeline.config import TrainConfig

# Deliberately not the sample's classes: behaviour must not depend on them.
CLASSES = ("zebra", "apple", "kiwi", "mango")
# training options sized for the tiny competition, on the CPU also where a GPU is present (the CUDA
# variants are the tests marked `cuda`)
QUICK = dict(batch_size=32, workers=0, lr=0.02, device="cpu")
runner = CliRunner()


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
    import py7zr  # here, not at the top: the GPU machine runs the suite's CUDA tests without it
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


def assert_png(path, min_size=(400, 250)):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        assert image.width >= min_size[0] and image.height >= min_size[1], image.size


def fabricate_run(weights, name, lr=0.1, val_acc=(0.5, 0.7, 0.6), epochs=None, status="finished", pid=None,
                  metrics=True, created="2026-01-01T10:00:00+00:00"):
    """A run folder as `pipeline train` leaves it, without training anything."""
    run = weights / name
    run.mkdir(parents=True)
    options = TrainConfig(lr=lr, epochs=epochs or len(val_acc), name=name, milestones=[2]).__dict__
    (run / "config.json").write_text(json.dumps({"options": options, "classes": ["a", "b"], "created": created}))
    if metrics:
        n = len(val_acc)
        pd.DataFrame({"epoch": range(1, n + 1), "train_loss": np.linspace(2, 1, n), "train_acc": np.linspace(0.4, 0.8, n),
                      "val_loss": np.linspace(2.2, 1.2, n), "val_acc": val_acc, "val_f1": np.array(val_acc) - 0.05,
                      "lr": [lr] * n, "seconds": [2.0] * n, "wall_s": np.arange(1, n + 1) * 2.0,
                      "images_per_s": [100.0] * n}).to_csv(run / "metrics.csv", index=False)
    if status:
        (run / "status.json").write_text(json.dumps({"state": status, "pid": pid or os.getpid(),
                                                     "host": socket.gethostname()}))
    return run


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
