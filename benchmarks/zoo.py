"""The ResNet family side by side: each depth trained with the same short
schedule on the same split; val accuracy, training images/s, parameters and multiply-adds.

    python benchmarks/zoo.py --dataset DIR [--models resnet18 resnet34 …] [--epochs 10] [--limit N]
                             [--options '{"stem": "cifar"}']

DIR is a competition folder, e.g. from `../shared/cifar10/make_competition.py OUT`. Each model is an
ordinary `pipeline train` run under --weights (default /tmp/zoo-weights), so `pipeline runs` and
`pipeline compare` work on them too. Results go to benchmarks/results/zoo-<device>-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.config import config_from
from pipeline.models import build_model
from pipeline.models.summary import summarize
from pipeline.run import Run, summarize_metrics
from pipeline.runtime import resolve_device
from pipeline.train import train
from record import write_result

DEPTHS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=Path("dataset"))
    parser.add_argument("--models", nargs="+", default=DEPTHS)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N labeled images")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--options", default="{}", help='more train options as JSON, e.g. \'{"stem": "cifar"}\'')
    parser.add_argument("--weights", type=Path, default=Path("/tmp/zoo-weights"))
    args = parser.parse_args()
    # one short schedule for every depth: the fast recipe's ingredients (one-cycle, EMA, cutout)
    common = {"recipe": "fast", "epochs": args.epochs, "limit": args.limit, "device": args.device,
              **json.loads(args.options)}
    console, rows = Console(), []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in args.models:
        config = config_from({**common, "model": name, "name": f"zoo-{name}-{stamp}"})
        result = train(config, dataset_root=args.dataset, weights_root=args.weights, console=console)
        run = Run(result.run_dir).read_config()
        summary = summarize_metrics(Run(result.run_dir).read_metrics(), result.metric)
        side = config.img_size or run.image_size[0]
        described = summarize(build_model(name, len(run.classes), config.stem, run.channels),
                              (run.channels, side, side))
        rows.append({"model": name, "best_val_acc": round(summary.val_acc, 4), "best_epoch": result.best_epoch,
                     "train_images_per_s": round(summary.images_per_s, 1),
                     "train_wall_s": round(summary.wall_s, 1),
                     "parameters": described.parameters,
                     "multiply_adds_g": round(described.multiply_adds / 1e9, 3), "run": str(result.run_dir)})
    table = Table(*rows[0].keys(), title=f"{args.epochs} epochs each, {common}")
    for row in rows:
        table.add_row(*map(str, row.values()))
    console.print(table)
    options = {k: v for k, v in vars(config).items() if k not in ("model", "name")}
    out = write_result("zoo", resolve_device(args.device), {"options": options, "dataset": str(args.dataset), "models": rows})
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
