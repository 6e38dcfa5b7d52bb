"""Training steps per second of each model in each CPU precision, in the contiguous (NCHW) and the channels_last
(NHWC) memory layout; results to benchmarks/results/layout_speed-<device>-<time>.json.

    python benchmarks/layout_speed.py [--models fastnet custom:improved] [--batch-size 256] [--steps 4]

The training loop lays tensors out as `Runtime.memory_format` says (channels_last on CUDA, contiguous on the CPU);
this measures whether that holds for a model on the CPU at hand. Synthetic inputs, Nesterov SGD, one warm-up step.
"""
from __future__ import annotations

import argparse
import time

import torch

from pipeline.models import build_model
from record import write_result

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def steps_per_s(model_name: str, stem: str, precision: str, layout: str, batch_size: int, steps: int) -> float:
    """Training images/s of `model_name` after one warm-up step."""
    torch.manual_seed(0)
    model = build_model(model_name, 10, stem=stem).to(memory_format=LAYOUTS[layout]).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.85,
                                nesterov=True)
    images = torch.randn(batch_size, 3, 32, 32).contiguous(memory_format=LAYOUTS[layout])
    targets = torch.randint(0, 10, (batch_size,))
    dtype = PRECISIONS[precision]

    def step() -> None:
        with torch.autocast("cpu", dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["fastnet", "custom:improved"], help="MODEL or MODEL:STEM")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    rows = []
    for spec in args.models:
        name, _, stem = spec.partition(":")
        for precision in PRECISIONS:
            rates = {layout: steps_per_s(name, stem or "imagenet", precision, layout, args.batch_size, args.steps)
                     for layout in LAYOUTS}
            rows.append({"model": spec, "precision": precision, **{k: round(v, 1) for k, v in rates.items()},
                         "channels_last_vs_contiguous": round(rates["channels_last"] / rates["contiguous"], 3)})
            print(rows[-1], flush=True)
    out = write_result("layout_speed", torch.device("cpu"), {"batch_size": args.batch_size, "steps": args.steps,
                                                             "threads": torch.get_num_threads(), "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
