"""Prediction speed over a Kaggle-shaped test folder, one model and TTA; results to benchmarks/results/*.json.

    python benchmarks/predict_speed.py --project DIR --checkpoint FILE [--tta flip] [--precision auto] [--workers N]
                                       [--no-baseline]

DIR holds dataset/ (e.g. `make_competition.py DIR/dataset --test-size N`). Measured in one run:
(1) a seed-style path: PIL per image in a DataLoader, torchvision transforms, fp32;
(2) `pipeline predict` cold: no test cache and an empty `auto` cache (it measures, as on a new machine), end
to end (decode + probe + TTA inference + CSV), as a subprocess; (3) the same warm (both caches present). Reports images/s, ratios, peak RSS of each, and the agreement of
(2)'s argmax with the fp32 seed-style argmax.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch.utils.data import DataLoader

from baseline import PngDataset, eval_transform
from pipeline.layout import check_test, id_sort_key
from pipeline.infer import TTA_VIEWS, load_model, view
from pipeline.run import RunConfig, checkpoint_label, load_checkpoint
from pipeline.runtime import resolve_device
from record import write_result

@torch.no_grad()
def per_image_baseline(checkpoint: Path, dataset: Path, tta: str, device: torch.device, workers: int) -> tuple[float, np.ndarray]:
    """images/s and argmax of per-image PIL decoding in DataLoader workers and an fp32 model."""
    model, config = load_model(checkpoint, device)
    model = model.to(memory_format=torch.contiguous_format)
    ids = sorted(check_test(dataset), key=id_sort_key)
    loader = DataLoader(PngDataset(dataset / "test", ids, None, eval_transform(config.mean, config.std)),
                        batch_size=256, num_workers=workers)
    started, predictions = time.perf_counter(), []
    for images, _ in loader:
        images = images.to(device)
        probs = sum(torch.softmax(model(view(images, *v)), 1) for v in TTA_VIEWS[tta])
        predictions.append(probs.argmax(1).cpu())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(ids) / (time.perf_counter() - started), torch.cat(predictions).numpy()


def peak_rss_kib() -> int:
    """This process's own peak RSS (VmHWM): unlike ru_maxrss, it excludes a parent's peak inherited at exec."""
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


# `pipeline predict` in a fresh process that writes its own peak RSS (VmHWM, KiB) to argv[1] on exit
REPORTING_PREDICT = ("import atexit, re, sys; from pathlib import Path; out = sys.argv.pop(1); "
                     "atexit.register(lambda: open(out, 'w').write(re.search(r'VmHWM:\\s+(\\d+)', "
                     "Path('/proc/self/status').read_text()).group(1))); "
                     "from pipeline.cli import main; main()")


def run_predict(project: Path, checkpoint: Path, tta: str, device: str, precision: str,
                cache: Path) -> tuple[float, int, str | None]:
    """Wall seconds, peak RSS (KiB) and `auto`'s line of `pipeline predict` in a fresh process whose `auto`
    cache is `cache`."""
    rss_file = project / ".predict-peak-rss"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", REPORTING_PREDICT, str(rss_file), "predict", "--checkpoint",
                           str(checkpoint), "--tta", tta, "--device", device, "--precision", precision], cwd=project,
                          stdout=subprocess.PIPE, text=True, env={**os.environ, "PIPELINE_CACHE_DIR": str(cache),
                          "COLUMNS": "1000", "PYTHONPATH": os.pathsep.join(
                              filter(None, [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")]))})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"pipeline predict failed with status {done.returncode}")
    peak = int(rss_file.read_text())
    rss_file.unlink()
    return seconds, peak, next((line for line in done.stdout.splitlines() if line.startswith("auto → ")), None)


def seed_style_comparison(args, checkpoint: Path, dataset: Path, device: torch.device, numbers: dict) -> dict:
    """The seed-style path's rate and peak RSS beside the pipeline's, and the argmax agreement of the
    pipeline's probabilities (already written by `pipeline predict`) with its fp32 ones."""
    n, cold_s, warm_s = numbers["images"], numbers["seconds"]["cold"], numbers["seconds"]["warm"]
    seed_rate, seed_argmax = per_image_baseline(checkpoint, dataset, args.tta, device, args.workers)
    seed_rss = peak_rss_kib()  # this process (its DataLoader workers not counted)
    probs = np.load(args.project.resolve() / "submissions" / f"{checkpoint_label(checkpoint)}.probs.npy")
    return {
        "seed_style_workers": args.workers,
        "images_per_s": {**numbers["images_per_s"], "seed_style": round(seed_rate, 1)},
        "seconds": {**numbers["seconds"], "seed_style": round(n / seed_rate, 1)},
        "ratios": {"cold_vs_seed_style": round((n / cold_s) / seed_rate, 3),
                   "warm_vs_seed_style": round((n / warm_s) / seed_rate, 3)},
        "peak_rss_mib": {**numbers["peak_rss_mib"], "seed_style": round(seed_rss / 1024)},
        "argmax_agreement_cold_vs_fp32_seed_style": round(float((probs.argmax(1) == seed_argmax).mean()), 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--tta", default="flip", choices=list(TTA_VIEWS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="pipeline predict's --precision (auto, fp32, bf16, int8)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--no-baseline", action="store_true", help="time `pipeline predict` alone, not the seed-style path")
    args = parser.parse_args()
    project, checkpoint = args.project.resolve(), args.checkpoint.resolve()
    dataset = project / "dataset"
    device = resolve_device(args.device)
    n = len(check_test(dataset))
    options = RunConfig.of_checkpoint(load_checkpoint(checkpoint), checkpoint).options

    for stale in (dataset / ".cache").glob("test.*"):
        stale.unlink()
    with tempfile.TemporaryDirectory() as cache:  # cold: as on a new machine, `auto` measures first
        cold_s, cold_rss, cold_auto = run_predict(project, checkpoint, args.tta, args.device, args.precision, Path(cache))
        warm_s, warm_rss, warm_auto = run_predict(project, checkpoint, args.tta, args.device, args.precision, Path(cache))
    numbers = {
        "images": n, "tta": args.tta, "precision": args.precision, "views": len(TTA_VIEWS[args.tta]),
        "model": {"model": options.model, "stem": options.stem},
        "images_per_s": {"cold": round(n / cold_s, 1), "warm": round(n / warm_s, 1)},
        "seconds": {"cold": round(cold_s, 1), "warm": round(warm_s, 1)},
        "peak_rss_mib": {"cold": round(cold_rss / 1024), "warm": round(warm_rss / 1024)},
        "auto": {"cold": cold_auto, "warm": warm_auto},
    }
    if not args.no_baseline:
        numbers.update(seed_style_comparison(args, checkpoint, dataset, device, numbers))
    out = write_result("predict_speed", device, numbers)
    Console().print_json(json.dumps(numbers))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
