"""A public record as the reference on our own split: KellerJordan/cifar10-airbench's airbench94 (kept outside
this repository, never committed) trained on the training images a pipeline run trains on, scored on the
competition's held-out images.

    python benchmarks/airbench_reference.py --dataset DIR --script PATH/airbench94.py [--full] [--work DIR]

DIR is a competition with scored held-out images (`make_competition.py DIR --holdout K`). The script reads
`cifar10/train.pt` and `cifar10/test.pt` under its working folder when they exist (it downloads CIFAR-10 only
when they are missing): this writes them — train: the seeded 80/20 split's training part that `pipeline train`
takes (`--full`: every labeled image), test: the held-out images with solution.csv's labels — then runs the
script there as it is and records the mean and spread of the held-out accuracies it prints.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from pipeline.config import TrainConfig
from pipeline.dataset import run_split, training_arrays
from pipeline.runtime import resolve_device
from record import write_result


def write_airbench_data(dataset: Path, folder: Path, full: bool) -> dict:
    """train.pt and test.pt in airbench's format: uint8 (N, 32, 32, 3) images, int64 labels, class names."""
    data = training_arrays(dataset)
    defaults = TrainConfig()
    train_idx, _ = run_split(data.targets, defaults.val_fraction, defaults.seed, full, data.classes)
    solution = pd.read_csv(dataset / "solution.csv", dtype=str)
    test_images = np.stack([np.asarray(Image.open(dataset / "test" / f"{i}.png").convert("RGB"))
                            for i in solution.iloc[:, 0]])
    test_labels = solution.iloc[:, 1].map({name: k for k, name in enumerate(data.classes)}).to_numpy()
    folder.mkdir(parents=True, exist_ok=True)
    for name, images, labels in (("train", data.images[train_idx], data.targets[train_idx]),
                                 ("test", test_images, test_labels)):
        torch.save({"images": torch.from_numpy(np.ascontiguousarray(images)),
                    "labels": torch.from_numpy(labels.astype(np.int64)), "classes": data.classes},
                   folder / f"{name}.pt")
    return {"train_images": len(train_idx), "held_out_images": len(test_labels)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--script", type=Path, required=True, help="airbench94.py, unmodified")
    parser.add_argument("--full", action="store_true", help="train on every labeled image (as `train --full`)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/airbench-reference"))
    args = parser.parse_args()
    if not (args.dataset / "solution.csv").is_file():
        parser.error(f"{args.dataset / 'solution.csv'}: no held-out labels; make the competition with --holdout")
    if not args.script.is_file():
        parser.error(f"{args.script}: not found; fetch KellerJordan/cifar10-airbench and name its airbench94.py")
    sizes = write_airbench_data(args.dataset, args.work / "cifar10", args.full)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(args.script.resolve())], cwd=args.work, capture_output=True, text=True)
    log = done.stdout + done.stderr
    (args.work / "airbench.log").write_text(log)
    found = re.search(r"Mean: ([\d.]+)\s+Std: ([\d.]+|nan)", log)  # one run: no spread
    if done.returncode or not found:
        sys.exit(f"error: {args.script} failed (status {done.returncode}); its log: {args.work / 'airbench.log'}")
    final_rows = [line.split("|") for line in log.splitlines() if re.search(r"\|\s*eval\s*\|", line)]
    seconds = [float(row[-2]) for row in final_rows if len(row) > 2 and row[-2].strip()]
    numbers = {**sizes, "script": args.script.name, "runs": len(seconds) or None,
               "held_out_acc_mean": float(found.group(1)), "held_out_acc_std": None if found.group(2) == "nan" else float(found.group(2)),
               "seconds_per_run_median": float(np.median(seconds)) if seconds else None,
               "wall_s_all_runs": round(time.perf_counter() - started, 1)}
    print(numbers)
    print(f"wrote {write_result('airbench_reference', resolve_device('auto'), numbers)}")


if __name__ == "__main__":
    main()
