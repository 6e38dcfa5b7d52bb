"""Two pipeline processes on one machine: a training and a prediction, each alone and both at once, with the
default threads and with the cores split by `--threads`; results to benchmarks/results/*.json.

    python benchmarks/threads_speed.py --project DIR --checkpoint FILE [--epochs 1] [--limit 4000]

DIR holds dataset/ with train/ and test/ (e.g. `make_competition.py DIR/dataset --limit 5000 --test-size 10000`).
Reports each command's wall seconds alone and together, and its slow-down (together / alone). Sharing the
cores explains a slow-down of about (processes wanting all cores) = 2 for the one that finishes last; many
times more means the two fight over the cores (threads spinning on cores the other needs).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

from record import write_result


def commands(args, threads: int | None) -> dict[str, list[str]]:
    """The two commands, each with `--threads N` when given."""
    extra = ["--threads", str(threads)] if threads else []
    pipeline = [sys.executable, "-m", "pipeline"]
    return {
        "train": [*pipeline, "train", "--improved", "--epochs", str(args.epochs), "--limit", str(args.limit),
                  "--device", "cpu", "--precision", "fp32", "--name", "threads-bench", *extra],
        "predict": [*pipeline, "predict", "--checkpoint", str(args.checkpoint), "--device", "cpu",
                    "--engine", args.engine, "--precision", args.precision, *extra],
    }


def run_together(project: Path, named: dict[str, list[str]]) -> dict[str, float]:
    """Start the commands at once; wall seconds of each."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                                      os.environ.get("PYTHONPATH")]))}
    started, processes, seconds = time.perf_counter(), {}, {}
    for name, command in named.items():
        processes[name] = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.DEVNULL)
    while processes:
        for name, process in list(processes.items()):
            if process.poll() is not None:
                if process.returncode != 0:
                    raise SystemExit(f"{name} failed with status {process.returncode}")
                seconds[name] = round(time.perf_counter() - started, 1)
                del processes[name]
        time.sleep(0.05)
    for run in (project / "weights").glob("threads-bench*"):
        shutil.rmtree(run)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit", type=int, default=4000)
    parser.add_argument("--engine", default="openvino")
    parser.add_argument("--precision", default="int8")
    args = parser.parse_args()
    args.checkpoint = args.checkpoint.resolve()
    project, cores = args.project.resolve(), os.cpu_count() or 1
    results = {"cores": cores, "torch_default_threads": torch.get_num_threads(),
               "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "engine": args.engine,
               "precision": args.precision}
    run_together(project, {"predict": commands(args, None)["predict"]})  # decodes the test cache once, untimed
    for label, threads in (("default threads", None), (f"--threads {max(1, cores // 2)} each", max(1, cores // 2))):
        named = commands(args, threads)
        alone = {name: run_together(project, {name: command})[name] for name, command in named.items()}
        together = run_together(project, named)
        results[label] = {"alone_s": alone, "together_s": together,
                          "slow_down": {name: round(together[name] / alone[name], 2) for name in named}}
    out = write_result("threads_speed", torch.device("cpu"), results)
    Console().print_json(json.dumps(results))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
