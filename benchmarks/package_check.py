"""`pipeline package RUN --rehearse` on a real-image competition, as a user types it: the package's size (weights and
wheels datasets), the rehearsal's install and prediction seconds on its hidden test set, and the budget estimate for
--test-images images; JSON to benchmarks/results/package_check-<device>-<time>.json.

    python benchmarks/package_check.py --project DIR --run NAME [--test-images N] [--python PY]

DIR is a project folder whose dataset/ holds a competition (`make_competition.py DIR/dataset …`) and whose weights/
holds the run NAME. --python runs the command with another interpreter, e.g. .venv-gpu-image/bin/python: the GPU
image's package versions, which the wheels dataset counts on Kaggle's image to have.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from record import write_result


def size_mb(folder: Path) -> float:
    return round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--test-images", type=int, default=None)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="package-check-")) / "package"
    command = [args.python, "-m", "pipeline", "package", args.run, "--owner", "benchmark", "--rehearse",
               "--out", str(out), *(["--test-images", str(args.test_images)] if args.test_images else [])]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=args.project, capture_output=True, text=True)
    print(done.stdout[-4000:], done.stderr[-2000:], flush=True)
    if done.returncode:
        sys.exit(f"error: `{' '.join(command)}` failed with status {done.returncode}")
    members = json.loads((out / "weights" / "members.json").read_text())
    interpreter = subprocess.run([args.python, "-c", "import torch, numpy; print(torch.__version__, numpy.__version__)"],
                                 capture_output=True, text=True).stdout.split()
    numbers = {"command": "pipeline " + " ".join(command[3:]), "command_s": round(time.perf_counter() - started, 1),
               "interpreter": {"python": args.python, "torch": interpreter[0], "numpy": interpreter[1]},
               "weights_dataset_mb": size_mb(out / "weights"), "wheels_dataset_mb": size_mb(out / "wheels"),
               "wheels": sorted(p.name for p in (out / "wheels").glob("*.whl")),
               "members": members["checkpoints"], "tta": members["tta"], "package_estimate": members["estimate"],
               "rehearsal": json.loads((out / "rehearsal.json").read_text()),
               # predict's own choice in the notebook (`auto`), as its log line names it: "(flip TTA, torch fp32)"
               "rehearsal_engine": re.findall(r"\(\S+ TTA, ([^)]+)\)", (out / "rehearsal.log").read_text())}
    print(write_result("package_check", torch.device("cpu"), numbers))
    shutil.rmtree(out.parent)


if __name__ == "__main__":
    main()
