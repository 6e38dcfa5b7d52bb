"""Training images/s of each model in each CPU precision, in the contiguous (NCHW) and the channels_last (NHWC)
memory layout; results to benchmarks/results/layout_speed-<device>-<time>.json.

    python benchmarks/layout_speed.py [--models fastnet custom:improved] [--batch-size 256] [--steps 4]

Each rate is the probe `pipeline train --precision auto` runs on the CPU to choose among these four candidates
(`pipeline.precision.training_trial`), here on synthetic inputs with more steps.
"""
from __future__ import annotations

import argparse

import torch

from pipeline.models import build_model
from pipeline.precision import training_trial
from pipeline.runtime import Runtime
from record import write_result


def images_per_s(model_name: str, stem: str, candidate: str, batch_size: int, steps: int) -> float:
    """Training images/s of `model_name` in `candidate` (a precision, then `channels_last` or nothing)."""
    torch.manual_seed(0)
    model = build_model(model_name, 10, stem=stem)
    images, targets = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
    return training_trial(model, images, targets, Runtime(), candidate, steps).rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["fastnet", "custom:improved"], help="MODEL or MODEL:STEM")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    rows = []
    for spec in args.models:
        name, _, stem = spec.partition(":")
        for precision in ("fp32", "bf16"):
            rates = {layout: images_per_s(name, stem or "imagenet", f"{precision}{suffix}", args.batch_size, args.steps)
                     for layout, suffix in (("contiguous", ""), ("channels_last", " channels_last"))}
            rows.append({"model": spec, "precision": precision, **{k: round(v, 1) for k, v in rates.items()},
                         "channels_last_vs_contiguous": round(rates["channels_last"] / rates["contiguous"], 3)})
            print(rows[-1], flush=True)
    out = write_result("layout_speed", torch.device("cpu"), {"batch_size": args.batch_size, "steps": args.steps,
                                                             "threads": torch.get_num_threads(), "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
