"""`pipeline lr-find`: the learning-rate range test (L. Smith, 2015; fastai's `lr_find`). A fresh model — the
one `pipeline train` with the same options would build, on its training split, augmentation, optimizer and
precision — takes one step per learning rate, the rate rising exponentially, until the loss blows up. The
smoothed loss against the rate is written as a CSV and a plot, and the rate where the loss falls fastest is
suggested for `--lr`."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console

from pipeline.config import LR_FIND_FOLDER, TrainConfig, check_range
from pipeline.dataset import channel_stats, run_split, training_arrays
from pipeline.errors import PipelineError
from pipeline.figures import plot_lr_curve
from pipeline.runtime import resolve_runtime
from pipeline.run import RunConfig
from pipeline.train import DATA_INIT_IMAGES, TrainBatches, optimizer_and_schedule, run_model, training_step
from pipeline.workspace import atomic_path, dataset_dir, weights_dir

SMOOTHING = 0.98  # of the loss's exponential moving average (bias-corrected), as fastai
BLOW_UP = 4.0  # the test stops once the smoothed loss exceeds this many times its minimum


@dataclass(frozen=True)
class LrFindResult:
    suggested: float  # where the smoothed loss falls fastest (per decade of learning rate)
    minimum: float  # where the smoothed loss is lowest: too high to train at, usually by about 10×
    steps: int  # steps taken before the loss blew up or the rates ran out
    csv: Path
    plot: Path


def lr_find(config: TrainConfig, start: float = 1e-7, end: float = 10.0, steps: int = 100,
            dataset_root: Path | None = None, out: Path | None = None, console: Console | None = None) -> LrFindResult:
    """Run the range test with `config`'s model, data and optimizer; results to `out` (weights/lr-find/)."""
    config.validate()
    check_range("start", start, 0, low_ok=False)
    check_range("end", end, start, low_ok=False)  # above --start
    if steps < 20:
        raise PipelineError(f"--steps {steps}: the range test needs 20 or more steps")
    console = console or Console()
    out = out or weights_dir() / LR_FIND_FOLDER
    runtime = resolve_runtime(config.device, config.precision, config.threads)  # CPU auto: fp32, unmeasured
    data = training_arrays(dataset_root or dataset_dir(), config.skip_bad, config.limit, console)
    train_idx, _ = run_split(data.targets, config.val_fraction, config.seed, config.full, data.classes)
    mean, std = channel_stats(data.images[train_idx])
    batches = TrainBatches(config, data.images[train_idx], data.targets[train_idx], len(data.classes), runtime,
                           mean, std)
    described = RunConfig(options=config, classes=data.classes, channels=data.images.shape[3],  # what the model needs
                          image_size=list(data.images.shape[1:3]), mean=list(mean), std=list(std))
    model, _ = run_model(config, described, runtime, console, data.images[train_idx[:DATA_INIT_IMAGES]])
    # the range test steps the rate itself, without a recipe's lookahead pulling the weights back
    optimizer, _, _ = optimizer_and_schedule(replace(config, lookahead=False), model, runtime.device, batches.steps)
    rates, losses = _sweep(model, optimizer, batches, runtime, np.geomspace(start, end, steps),
                           torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing), config.clip_grad)
    return _report(rates, losses, out, console, config.limit)


def _sweep(model, optimizer, batches: TrainBatches, runtime, rates: np.ndarray, criterion,
           clip_grad: float | None) -> tuple[np.ndarray, np.ndarray]:
    """One step per rate of `rates` (epochs of batches repeated as needed) until the smoothed loss blows up;
    the rates taken and their smoothed losses."""
    scaler, model = runtime.gradient_scaler(), model.train()
    smoothed, average, best = [], 0.0, np.inf
    epoch = 0
    while len(smoothed) < len(rates):
        for images, targets in batches.epoch(epoch):
            if len(smoothed) == len(rates):
                break
            for group in optimizer.param_groups:
                group["lr"] = float(rates[len(smoothed)]) * group["lr_scale"]
            images, targets = images.to(runtime.device), targets.to(runtime.device)
            _, loss = training_step(model, images, targets, criterion, optimizer, scaler, runtime, clip_grad)
            average = SMOOTHING * average + (1 - SMOOTHING) * loss.item()
            smoothed.append(average / (1 - SMOOTHING ** (len(smoothed) + 1)))
            best = min(best, smoothed[-1])
            if not np.isfinite(smoothed[-1]) or smoothed[-1] > BLOW_UP * best:
                return rates[:len(smoothed)], np.asarray(smoothed)
        epoch += 1
    return rates, np.asarray(smoothed)


def _report(rates: np.ndarray, losses: np.ndarray, out: Path, console: Console,
            limit: int | None = None) -> LrFindResult:
    """Suggest the rate of the steepest fall before the minimum, past the first tenth of the steps (whose
    barely smoothed losses are noise, as fastai skips them); write the curve as CSV and plot."""
    finite = np.isfinite(losses)
    rates, losses = rates[finite], losses[finite]
    skip = max(len(losses) // 10, 3)
    if len(losses) < skip + 5:
        raise PipelineError(f"the loss blew up within {len(losses)} steps, by lr {rates[-1]:.2g}; "
                            "pass a lower --start or more --steps")
    lowest = skip + int(np.argmin(losses[skip:]))
    if lowest < skip + 2 or losses[lowest] > 0.95 * losses[skip]:
        raise PipelineError(f"the loss did not fall by 5% between lr {rates[skip]:.2g} and {rates[-1]:.2g} (from "
                            f"{losses[skip]:.3g} to {losses[lowest]:.3g} at best), so no rate can be suggested; widen the "
                            "range (a lower --start or a higher --end), or give it more --steps"
                            + (f", or more images than --limit {limit}" if limit else ""))
    slope = np.gradient(losses[skip:lowest + 1], np.log10(rates[skip:lowest + 1]))
    suggested, minimum = float(rates[skip + int(np.argmin(slope))]), float(rates[lowest])
    out.mkdir(parents=True, exist_ok=True)
    csv, plot = out / "lr_find.csv", out / "lr_find.png"
    with atomic_path(csv) as tmp:
        pd.DataFrame({"lr": rates, "smoothed_loss": losses}).to_csv(tmp, index=False)
    plot_lr_curve(rates, losses, suggested, plot)
    console.print(f"lr-find: {len(losses)} steps; the loss falls fastest at lr {suggested:.3g} (suggested --lr) and is "
                  f"lowest at {minimum:.3g}; curve in {plot}")
    return LrFindResult(suggested, minimum, len(losses), csv, plot)
