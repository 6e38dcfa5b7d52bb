"""A Fashion-MNIST-shaped Kaggle dataset (zip of `*train*.csv` / `*test*.csv`: label + S×S grey
pixels) made from real CIFAR-10 images, to exercise `pipeline fetch --dataset` and 1-channel
transfer learning on real pictures without network access.

    python benchmarks/pixel_csv_dataset.py OUT.zip [--source ../shared/cifar10/cifar10-train-jpg.zip]
        [--first-id 20001] [--train 10000] [--test 2000] [--size 28]

Images `first-id …` of the source (by id) become the train CSV, the next `--test` the test CSV
(labelled, so the fetched dataset has a solution.csv). Serve it with
`python -m tests.kaggle_standin owner/name=OUT.zip` and fetch with `pipeline fetch --dataset owner/name`.
"""
from __future__ import annotations

import argparse
import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--source", type=Path, default=Path("../shared/cifar10/cifar10-train-jpg.zip"))
    parser.add_argument("--first-id", type=int, default=20001)
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--size", type=int, default=28)
    args = parser.parse_args()
    with zipfile.ZipFile(args.source) as source:
        labels_name = next(n for n in source.namelist() if n.endswith("trainLabels.csv"))
        labels = {row["id"]: row["label"] for row in csv.DictReader(io.TextIOWrapper(source.open(labels_name)))}
        images = {Path(n).stem: n for n in source.namelist() if n.lower().endswith((".jpg", ".png"))}
        ids = [str(i) for i in range(args.first_id, args.first_id + args.train + args.test)]
        rows = []
        for image_id in ids:
            with Image.open(source.open(images[image_id])) as image:
                grey = image.convert("L").resize((args.size, args.size), Image.BILINEAR)
            rows.append(np.asarray(grey).ravel())
    frame = pd.DataFrame(np.stack(rows), columns=[f"pixel{k}" for k in range(1, args.size ** 2 + 1)])
    frame.insert(0, "label", [labels[i] for i in ids])
    with zipfile.ZipFile(args.out, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("pixels_train.csv", frame.iloc[:args.train].to_csv(index=False))
        out.writestr("pixels_test.csv", frame.iloc[args.train:].to_csv(index=False))
    print(f"wrote {args.out}: {args.train} train and {args.test} test images, {args.size}×{args.size} grey")


if __name__ == "__main__":
    main()
