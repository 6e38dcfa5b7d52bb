"""The user's flow as typed, timed: `pipeline train ARGS --name NAME`, then `pipeline predict --run NAME --score`
on the competition's held-out images; JSON to benchmarks/results/user_flow-<device>-<time>.json.

    python benchmarks/user_flow.py --project DIR --name NAME [-- TRAIN_ARGS ...]

DIR is a project folder whose dataset/ holds a competition with scored held-out images
(`make_competition.py DIR/dataset --holdout K`). Each command runs in its own process, as a user's would (its
time includes importing torch and, for predict, decoding the test images on a cold cache). Recorded: each
command's wall time, the run's best val accuracy, its epoch and training time (metrics.csv), and the held-out
accuracy of predict's default TTA.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from pipeline.run import Run, summarize_metrics
from pipeline.runtime import resolve_device
from record import write_result


def timed(command: list[str], project: Path) -> tuple[float, str]:
    """Run a command in `project`, echoing its output; its wall time and output (exits when it fails)."""
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(done.stdout[-4000:], flush=True)
    if done.returncode:
        sys.exit(f"error: `{' '.join(command)}` failed with status {done.returncode}")
    return round(time.perf_counter() - started, 1), done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--name", required=True, help="the run's name under weights/")
    parser.add_argument("train_args", nargs="*", help="pipeline train's options, after --")
    args = parser.parse_args()
    solution = args.project / "dataset" / "solution.csv"
    if not solution.is_file():
        parser.error(f"{solution}: no held-out labels; make the competition with --holdout")
    pipeline = [sys.executable, "-m", "pipeline"]
    train_s, _ = timed([*pipeline, "train", *args.train_args, "--name", args.name], args.project)
    predict_s, predicted = timed([*pipeline, "predict", "--run", args.name, "--score", str(solution.resolve())],
                                 args.project)
    score = re.search(r"on the scored ids: ([\d.]+)", predicted)  # cli.predict's line
    run = Run(args.project / "weights" / args.name)
    config = run.read_config()
    summary = summarize_metrics(run.read_metrics(), config.metric)
    numbers = {"train_command": f"pipeline train {' '.join(args.train_args)}".strip(),
               "recipe": config.options.recipe, "model": config.options.model, "stem": config.options.stem,
               "epochs": summary.epochs, "train_images": config.split.get("train_images"),
               "val_images": config.split.get("val_images"), "precision": config.precision,
               "best_val_acc": summary.val_acc, "best_epoch": summary.best_epoch,
               "training_s": summary.wall_s, "train_command_s": train_s, "predict_command_s": predict_s,
               "held_out_acc": float(score.group(1)) if score else None,
               "end_to_end_s": round(train_s + predict_s, 1)}
    print(numbers)
    print(f"wrote {write_result('user_flow', resolve_device('auto'), numbers)}")


if __name__ == "__main__":
    main()
