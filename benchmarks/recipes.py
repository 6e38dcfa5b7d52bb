"""Training recipes side by side at one fixed budget: each trains the same model on the same split for the same
epochs; held-out accuracy (torch fp32) with each TTA of --tta, best val accuracy and training time.

    python benchmarks/recipes.py --dataset DIR [--candidates seed fast …] [--epochs 10] [--options JSON]

DIR is a competition with scored held-out images, e.g. `../shared/cifar10/make_competition.py DIR --limit 15000
--holdout 5000` (10,000 labeled images: 8,000 train / 2,000 val; 5,000 held out). Every candidate gets --options
on top (default: the improved stem, as the issue's comparison asks). Each is an ordinary run under --weights
(default /tmp/recipes-weights). Results go to benchmarks/results/recipes-<device>-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.config import TTA_CHOICES, config_from
from pipeline.predict import predict
from pipeline.run import Run, summarize_metrics
from pipeline.runtime import resolve_device
from pipeline.train import train
from record import write_result

# short-schedule candidates: SGD + Nesterov at batch 128 with a one-cycle lr, label smoothing, an EMA sized for a
# few hundred steps, and the new augmentations one at a time
SHORT = dict(recipe="seed", batch_size=128, lr=0.1, nesterov=True, schedule="onecycle", label_smoothing=0.1, ema=0.99)
FASTNET = dict(recipe="fastnet", stem="imagenet")  # its own first layer: no ResNet stem
CANDIDATES = {
    "seed": dict(recipe="seed"),
    # the seed recipe with the other stems (the write-up's table: 7x7/2 + pool 0.846, its improved stem 0.919)
    "seed-improved-pool": dict(recipe="seed", stem="improved-pool"),
    "seed-imagenet": dict(recipe="seed", stem="imagenet"),
    "fast": dict(recipe="fast"),
    "short": SHORT,
    "short-trivial": dict(SHORT, aug="trivial"),
    "short-mix": dict(SHORT, mixup=0.2, cutmix=1.0),
    "short-erase": dict(SHORT, erase=0.25),
    "short-adamw": dict(SHORT, optimizer="adamw", lr=0.003, nesterov=False, weight_decay=0.05),
    "short-cosine": dict(SHORT, schedule="cosine", warmup_epochs=1),
    "fastnet": FASTNET,
    "fastnet-bias64": dict(FASTNET, norm_bias_lr=64),  # airbench's BatchNorm-bias learning rate
    "fastnet-triangle": dict(FASTNET, schedule="triangle"),  # airbench94's linear up/down schedule
    "fastnet-lookahead": dict(FASTNET, lookahead=True),  # airbench94's lookahead
    # all of airbench94's training choices at once: its batch and lr, bias lr, schedule and lookahead
    "fastnet-airbench": dict(FASTNET, batch_size=1024, lr=1.5, norm_bias_lr=64, schedule="triangle", lookahead=True),
    "fastnet-ema": dict(FASTNET, ema=0.99),
    "fastnet-wide": dict(FASTNET, recipe="fastnet-wide"),  # airbench96's wider residual net and training
    "fastnet-crop": dict(FASTNET, aug="crop-flip"),  # the recipe's augmentation before shift-altflip
    "fastnet-shift": dict(FASTNET, aug="shift-flip"),
    "fastnet-trivial": dict(FASTNET, aug="trivial"),
    "fastnet-mix": dict(FASTNET, mixup=0.2, cutmix=1.0),
    "fastnet-erase": dict(FASTNET, erase=0.25),
}


def held_out_accuracy(run_dir: Path, tta: str, args: argparse.Namespace, solution: Path, console: Console) -> float:
    with tempfile.TemporaryDirectory() as out:
        scored = predict(runs=[run_dir], tta=tta, device=args.device, precision="fp32", engine="torch",
                         score=solution, dataset_root=args.dataset, out=Path(out) / "submission.csv", console=console)
    return round(scored.score, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--candidates", nargs="+", default=["seed", "fast", "short"], choices=list(CANDIDATES))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--options", default='{"stem": "improved"}', help="train options every candidate takes")
    parser.add_argument("--weights", type=Path, default=Path("/tmp/recipes-weights"))
    parser.add_argument("--tta", nargs="+", default=["flip"], choices=TTA_CHOICES,
                        help="held-out accuracy with each of these TTA views (the first heads the table)")
    args = parser.parse_args()
    solution = args.dataset / "solution.csv"
    if not solution.is_file():
        parser.error(f"{solution}: no held-out labels; make the competition with --holdout")
    common = {"epochs": args.epochs, "device": args.device, **json.loads(args.options)}
    console, rows = Console(), []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in args.candidates:
        config = config_from({**common, **CANDIDATES[name], "name": f"{name}-{stamp}"})
        config.validate()
        result = train(config, dataset_root=args.dataset, weights_root=args.weights, console=console)
        summary = summarize_metrics(Run(result.run_dir).read_metrics(), result.metric)
        held_out = {tta: held_out_accuracy(result.run_dir, tta, args, solution, console) for tta in args.tta}
        rows.append({"candidate": name, "held_out_acc": held_out[args.tta[0]],
                     "best_val_acc": None if summary.val_acc is None else round(summary.val_acc, 4),
                     "best_epoch": result.best_epoch, "train_wall_s": round(summary.wall_s, 1),
                     "held_out_acc_by_tta": held_out, "precision": Run(result.run_dir).read_config().precision,
                     "options": {**common, **CANDIDATES[name]}})
    shown = [k for k in rows[0] if k not in ("options", "held_out_acc_by_tta")]
    table = Table(*shown, *args.tta, title=f"{args.epochs} epochs each on {args.dataset}; held out with TTA {args.tta[0]}")
    for row in rows:
        table.add_row(*[str(row[k]) for k in shown], *[str(row["held_out_acc_by_tta"][tta]) for tta in args.tta])
    console.print(table)
    out = write_result("recipes", resolve_device(args.device), {"dataset": str(args.dataset), "epochs": args.epochs,
                                                                 "tta": args.tta, "candidates": rows})
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
