"""What pseudo-labels and distillation buy, at one budget: the default recipe alone; with pseudo-labels from itself and
from a stronger teacher (a K-fold CV of the same recipe, its fold ensemble); distilled from that ensemble, with and
without its pseudo-labels. Every student trains with --full on the labeled images (no val split, so any teacher is
clean) for the same epochs, and is scored on the held-out images, with the ensemble beside them; prediction time is
each one's `pipeline predict` wall time over the whole test set (flip TTA, torch fp32).

    python benchmarks/teach_check.py --dataset DIR [--epochs 10] [--folds 5] [--work DIR] [--options JSON]
                                     [--teacher-options JSON]

DIR is a competition with scored held-out images in its test set, e.g. `../shared/cifar10/make_competition.py DIR
--limit 15000 --holdout 5000 --test-size 10000` (10,000 labeled; a test set of the 5,000 held-out images and 5,000
perturbed copies of them). The pseudo-labeled images are those test images, as on Kaggle, where the scored images
are the test set: the teacher's labels of them, never their own. The runs go to WORK/weights and the predictions to
WORK/submissions (the command line's layout, which --pseudo and --teacher read). --teacher-options makes the CV teacher
stronger than its students (e.g. '{"epochs": 16}': twice the budget per fold). Results go to
benchmarks/results/teach_check-<device>-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from pipeline.config import config_from
from pipeline.cv import train_cv
from pipeline.predict import predict
from pipeline.run import Run
from pipeline.runtime import resolve_device
from pipeline.train import train
from record import write_result


def scored(run: Path, dataset: Path, device: str, console: Console) -> dict:
    """Held-out accuracy of a run or CV, and the wall time of predicting the whole test set with it."""
    started = time.perf_counter()
    result = predict(runs=[run], tta="flip", device=device, precision="fp32", engine="torch",
                     score=dataset / "solution.csv", dataset_root=dataset, console=console)
    return {"held_out_accuracy": result.score, "predict_s": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--options", default="{}", help="train options of every run, as JSON (default recipe)")
    parser.add_argument("--teacher-options", default="{}", help="the CV teacher's options beside --options, as JSON")
    parser.add_argument("--work", type=Path, default=Path("/tmp/teach-check"))
    args = parser.parse_args()
    dataset = args.dataset.resolve()
    if not (dataset / "solution.csv").is_file():
        parser.error(f"{dataset / 'solution.csv'}: no held-out labels; make the competition with --holdout")
    args.work.mkdir(parents=True, exist_ok=True)
    os.chdir(args.work)
    console = Console()
    base = config_from({**json.loads(args.options), "epochs": args.epochs, "device": args.device})
    students = {"alone": {}, "pseudo-self": {"pseudo": "alone"}, "pseudo-ensemble": {"pseudo": "teacher"},
                "distilled": {"teacher": "teacher"}, "distilled-pseudo": {"teacher": "teacher", "pseudo": "teacher"}}
    numbers: dict = {"options": json.loads(args.options), "teacher_options": json.loads(args.teacher_options),
                     "epochs": args.epochs, "folds": args.folds, "runs": {}}
    teacher = replace(config_from({**json.loads(args.options), "epochs": args.epochs, "device": args.device,
                                   **numbers["teacher_options"]}), folds=args.folds, name="teacher")
    for name, taught in students.items():
        if name == "pseudo-ensemble":  # the teacher first: a CV (of --teacher-options), its fold ensemble
            started = time.perf_counter()
            train_cv(teacher, dataset, console=console)
            numbers["runs"]["teacher"] = {"train_s": round(time.perf_counter() - started, 1),
                                          **scored(Path("teacher"), dataset, args.device, console)}
        started = time.perf_counter()
        result = train(replace(base, full=True, name=name, **taught), dataset, console=console)
        numbers["runs"][name] = {"taught": taught, "train_s": round(time.perf_counter() - started, 1),
                                 "pseudo_images": Run(result.run_dir).read_config().split.get("pseudo_images", 0),
                                 **scored(Path(name), dataset, args.device, console)}
        console.print(f"{name}: {numbers['runs'][name]}")
    console.print(json.dumps(numbers, indent=2))
    console.print(f"wrote {write_result('teach_check', resolve_device(args.device), numbers)}")


if __name__ == "__main__":
    main()
