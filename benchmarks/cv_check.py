"""Does cross-validation tell the truth? K-fold CV of one recipe, then its out-of-fold accuracy beside the held-out
accuracy of the fold ensemble (`pipeline predict --run <cv>`) and of each fold model alone.

    python benchmarks/cv_check.py --dataset DIR [--folds 5] [--options JSON] [--weights DIR] [--name CV]

DIR is a competition with scored held-out images, e.g. `../shared/cifar10/make_competition.py DIR --limit 15000
--holdout 5000` (10,000 labeled images, 5,000 held out). --options are train options as JSON (default: the default
recipe). --name CV continues an interrupted check: its finished folds are kept (delete an unfinished fold's
folder first), and train_s then counts only the folds trained in this call. Held-out predictions use flip TTA in
torch fp32. Results go to benchmarks/results/cv_check-<device>-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console

from pipeline.config import config_from
from pipeline.cv import train_cv
from pipeline.predict import predict
from pipeline.runtime import resolve_device
from record import write_result


def held_out_accuracy(runs: list[Path], dataset: Path, device: str, console: Console) -> float:
    with tempfile.TemporaryDirectory() as out:
        return predict(runs=runs, tta="flip", device=device, precision="fp32", engine="torch",
                       score=dataset / "solution.csv", dataset_root=dataset, out=Path(out) / "submission.csv",
                       console=console).score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--options", default="{}", help="train options as JSON")
    parser.add_argument("--weights", type=Path, default=Path("/tmp/cv-check-weights"))
    parser.add_argument("--name", help="continue this CV run under --weights (default: a new cv-<time>)")
    args = parser.parse_args()
    if not (args.dataset / "solution.csv").is_file():
        parser.error(f"{args.dataset / 'solution.csv'}: no held-out labels; make the competition with --holdout")
    options = {**json.loads(args.options), "folds": args.folds, "device": args.device,
               "name": args.name or f"cv-{time.strftime('%Y%m%d-%H%M%S')}"}
    console = Console()
    started = time.perf_counter()
    cv, summary = train_cv(config_from(options), dataset_root=args.dataset, weights_root=args.weights,
                           console=console)
    train_s = time.perf_counter() - started
    folds = [held_out_accuracy([cv.fold(i).path], args.dataset, args.device, console) for i in range(args.folds)]
    ensemble = held_out_accuracy([cv.path], args.dataset, args.device, console)
    numbers = {"options": options, "train_s": round(train_s, 1), "oof_accuracy": summary["oof"]["accuracy"],
               "fold_val_accuracy": [f["accuracy"] for f in summary["per_fold"]],
               "held_out_fold_ensemble": ensemble, "held_out_each_fold": folds,
               "held_out_single_fold_mean": sum(folds) / len(folds),
               "oof_minus_ensemble_points": round(100 * (summary["oof"]["accuracy"] - ensemble), 2)}
    console.print(json.dumps(numbers, indent=2))
    console.print(f"wrote {write_result('cv_check', resolve_device(args.device), numbers)}")


if __name__ == "__main__":
    main()
