"""Training speed, side by side on one model and machine; results to benchmarks/results/*.json.

    python benchmarks/train_speed.py throughput [--dataset DIR] [--stem S] [--batch-size B] [--steps N]
        images/s of (1) the model alone on synthetic tensors already on the device (the ceiling),
        (2) the pipeline's data path (decoded uint8 cache, batched on-device crop/flip), and
        (3) a seed-style path (PIL per image in a DataLoader, torchvision transforms, fp32),
        all with the same training step; prints the ratios.
        On the CPU also the data path in fp32 and in bf16, and what `--precision auto` picks (its own probe).
    python benchmarks/train_speed.py time-to-accuracy --dataset DIR --target 0.94 0.95 [--options JSON]
        trains with a recipe until val accuracy reaches the highest target; reports the training time to
        each target (the run's wall clock at the end of the first epoch that reached it) and the accuracy.
        With --run RUN_DIR, reports a run `pipeline train` made instead of training one.

DIR is a competition folder (train/, trainLabels.csv, …), e.g. from
`../shared/cifar10/make_competition.py OUT`; default ./dataset.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from pipeline.augment import BATCHED_POLICIES, BatchLoader, to_device_tensor
from pipeline.config import config_from
from baseline import CIFAR10_MEAN, CIFAR10_STD, PngDataset, train_transform
from pipeline.dataset import training_arrays
from pipeline.infer import infer, load_model
from pipeline.layout import load_train_set
from pipeline.models import build_model
from pipeline.runtime import Runtime, autocast_dtype, resolve_device
from pipeline.run import Run, summarize_metrics
from pipeline.precision import choose, training_trial
from pipeline.train import TRAINING_CANDIDATES, train
from record import write_result


def timed_steps(model, batches, runtime: Runtime, steps: int, warmup: int = 3) -> float:
    """images/s of `steps` SGD training steps drawn from `batches` (an endless iterator), after a warmup."""
    device = runtime.device
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    seen, started = 0, 0.0
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started, seen = time.perf_counter(), 0
        images, targets = next(batches)
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with runtime.autocast():
            loss = torch.nn.functional.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(targets)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started)


def endless(make_epoch):
    epoch = 0
    while True:
        epoch += 1
        yield from make_epoch(epoch)


def throughput(args) -> dict:
    device = resolve_device(args.device)
    runtime = Runtime(device, amp_dtype=autocast_dtype("auto", device))
    memory_format = runtime.memory_format
    data = load_train_set(args.dataset)  # ids and folder, for the per-image baseline
    started = time.perf_counter()
    images = training_arrays(args.dataset).images
    cache_seconds = time.perf_counter() - started
    n = min(len(data.ids), args.images)
    classes = len(data.classes)

    def model(fp32_eager: bool = False, layout: torch.memory_format = memory_format):
        torch.manual_seed(0)
        net = build_model("custom", classes, args.stem).to(device)
        if fp32_eager:
            return net
        net = net.to(memory_format=layout)
        return torch.compile(net) if args.compile else net

    size = images.shape[1:3]
    synthetic = (torch.randn(args.batch_size, 3, *size, device=device).contiguous(memory_format=memory_format),
                 torch.randint(0, classes, (args.batch_size,), device=device))
    model_only = timed_steps(model(), iter(lambda: synthetic, None), runtime, args.steps)

    x, y = to_device_tensor(images[:n], device), torch.from_numpy(data.targets[:n]).to(device)
    def loader(epoch: int, layout: torch.memory_format = memory_format) -> BatchLoader:
        return BatchLoader(x, y, args.batch_size, CIFAR10_MEAN, CIFAR10_STD, BATCHED_POLICIES["crop-flip"],
                           torch.Generator().manual_seed(epoch), layout)

    data_path = timed_steps(model(), endless(loader), runtime, args.steps)

    precisions = {}
    if device.type == "cpu":  # what `--precision auto` picks here, against each candidate's measured rate
        for candidate in TRAINING_CANDIDATES:
            setting = runtime.in_candidate(candidate)
            layout = setting.memory_format
            batches = endless(lambda epoch, layout=layout: loader(epoch, layout))
            precisions[candidate] = round(timed_steps(model(layout=layout), batches, setting, args.steps), 1)
        fastest = max(precisions.values())
        precisions["auto"] = auto_training_choice(model(), next(iter(loader(0))), runtime).to_dict()
        precisions["auto_vs_fastest"] = round(precisions[precisions["auto"]["candidate"]] / fastest, 3)
    seed_set = PngDataset(data.image_dir, data.ids[:n], data.targets[:n], train_transform(size, CIFAR10_MEAN, CIFAR10_STD))
    seed_loader = lambda epoch: DataLoader(seed_set, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,  # noqa: E731
                                           persistent_workers=False, pin_memory=device.type == "cuda")
    seed_style = timed_steps(model(fp32_eager=True), endless(seed_loader), Runtime(device), args.steps)
    return {
        "model": f"custom ResNet-18, {args.stem} stem", "images": n, "batch_size": args.batch_size,
        "steps": args.steps, "precision": runtime.precision, "compile": args.compile,
        "seed_style_workers": args.workers, "cache_build_or_load_s": round(cache_seconds, 2),
        "images_per_s": {"model_only": round(model_only, 1), "data_path": round(data_path, 1),
                         "seed_style": round(seed_style, 1)},
        "ratios": {"data_path_vs_seed_style": round(data_path / seed_style, 3),
                   "data_path_vs_model_only": round(data_path / model_only, 3)},
        "cpu_data_path_by_precision": precisions,
    }


def auto_training_choice(model, batch, runtime: Runtime):
    """The choice `pipeline train --precision auto` makes on this CPU, measured now (an empty cache)."""
    saved = os.environ.get("PIPELINE_CACHE_DIR")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["PIPELINE_CACHE_DIR"] = cache
        try:
            trials = {c: (lambda c=c: training_trial(model, *batch, runtime, c)) for c in TRAINING_CANDIDATES}
            return choose("training", {}, trials, 10**9, probe_pays=True)
        finally:
            os.environ.pop("PIPELINE_CACHE_DIR")
            if saved is not None:
                os.environ["PIPELINE_CACHE_DIR"] = saved


def time_to_accuracy(args) -> dict:
    """Train with the recipe until the highest target, or (--run) read a run `pipeline train` already made."""
    if args.run:
        return {**accuracy_over_time(args.run, args.target, wall=None), **val_accuracy_with_tta(args.run, args.tta)}
    options = {"recipe": args.recipe, "target_acc": max(args.target), "name": f"tta-{int(time.time())}",
               **json.loads(args.options)}
    started = time.perf_counter()
    result = train(config_from(options), dataset_root=args.dataset, weights_root=args.weights)
    return {"options": options, **accuracy_over_time(result.run_dir, args.target, time.perf_counter() - started)}


def accuracy_over_time(run_dir: Path, targets: list[float], wall: float | None) -> dict:
    """When a run first reached each target val accuracy (epoch, training seconds), and its accuracies."""
    run = Run(run_dir)
    metrics, config = run.read_metrics(), run.read_config()
    reached = {}
    for target in sorted(targets):
        hits = metrics[metrics["val_acc"] >= target]
        reached[str(target)] = None if hits.empty else {"epoch": int(hits["epoch"].iloc[0]),
                                                       "train_wall_s": float(hits["wall_s"].iloc[0])}
    return {"config": {k: v for k, v in vars(config.options).items() if k != "name"},
            "precision": config.precision, "train_images": config.split["train_images"],
            "val_images": config.split["val_images"], "targets": reached, "epochs": int(metrics["epoch"].iloc[-1]),
            "val_acc_per_epoch": [round(float(a), 4) for a in metrics["val_acc"]],
            "final_val_acc": float(metrics["val_acc"].iloc[-1]), "best_val_acc": float(metrics["val_acc"].max()),
            "wall_s_including_setup": None if wall is None else round(wall, 1),
            "train_wall_s": summarize_metrics(metrics).wall_s, "run_dir": str(run_dir)}


def val_accuracy_with_tta(run_dir: Path, views: list[str]) -> dict:
    """The best checkpoint's accuracy on the run's own val images with each TTA view (torch fp32, CPU)."""
    run = Run(run_dir)
    indices, targets, _ = run.read_val_probabilities()
    images = training_arrays(Path(run.read_config().dataset)).images[indices]
    model, config = load_model(run.best_checkpoint(), torch.device("cpu"))
    runtime = Runtime(torch.device("cpu"))
    return {f"best_val_acc_tta_{view}": round(float((infer(model, images, config.inputs, view, runtime, 500,
                                                           num_classes=len(config.classes)).argmax(1)
                                                     == targets).mean()), 4) for view in views}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["throughput", "time-to-accuracy"])
    parser.add_argument("--dataset", type=Path, default=Path("dataset"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--stem", default="imagenet")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--images", type=int, default=10000, help="images the data paths draw from")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--target", type=float, nargs="+", default=[0.94, 0.95])
    parser.add_argument("--options", default="{}", help='more train options as JSON, e.g. \'{"epochs": 20}\'')
    parser.add_argument("--weights", type=Path, default=Path("weights"))
    parser.add_argument("--run", type=Path, help="time-to-accuracy of this finished run instead of training one")
    parser.add_argument("--tta", nargs="*", default=[], help="with --run: also its best val accuracy with these TTA "
                        "views (none, flip, flip-shift)")
    args = parser.parse_args()
    numbers = throughput(args) if args.mode == "throughput" else time_to_accuracy(args)
    out = write_result(f"train_speed {args.mode}", resolve_device(args.device), numbers)
    print(json.dumps(numbers, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
