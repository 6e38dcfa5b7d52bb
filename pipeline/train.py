"""`pipeline train`: a ResNet on the 80/20 split of dataset/, one run folder per experiment under weights/.

A run keeps `config.json`, `metrics.csv`, TensorBoard events (`tb/`), `best.pt`, `last.pt` and
`result.txt`. A checkpoint is one dict (model, optimizer, scheduler, epoch, RNG state, config);
`--resume` restores all of it, and each epoch's shuffle and augmentation draw from a generator seeded
by (seed, epoch), so a resumed CPU run ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import itertools
import json
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from pipeline import __version__
from pipeline.config import RESUME_OVERRIDES, TrainConfig
from pipeline.dataset import (CIFAR10_MEAN, CIFAR10_STD, LabeledImages, PngDataset, eval_transform, image_size, load_train_set,
                              stratified_split, train_transform)
from pipeline.errors import PipelineError
from pipeline.models import build_model, load_pretrained, safe_torch_load
from pipeline.workspace import atomic_path, dataset_dir, weights_dir, write_text_atomic

EVAL_BATCH = 512


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    best_acc: float
    best_epoch: int


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise PipelineError(f"--device {spec}: no CUDA device is available; use --device cpu")
    try:
        return torch.device(spec)
    except RuntimeError:
        raise PipelineError(f"--device {spec!r}: expected auto, cpu or cuda[:N]") from None


def new_run_dir(weights_root: Path, name: str | None) -> Path:
    """Claim weights/<name>, or the first free of exp, exp2, exp3, … (as seed 004 named runs)."""
    weights_root.mkdir(parents=True, exist_ok=True)
    candidates = [name] if name else ("exp" if k == 1 else f"exp{k}" for k in itertools.count(1))
    for candidate in candidates:
        try:
            (weights_root / candidate).mkdir()
            return weights_root / candidate
        except FileExistsError:
            if name:
                raise PipelineError(
                    f"{weights_root / name} already exists: choose another --name or continue it with --resume"
                ) from None
    raise AssertionError("unreachable")


def save_checkpoint(path: Path, checkpoint: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load_checkpoint(path: Path) -> dict:
    """A pipeline checkpoint, loaded without running any pickled code."""
    if not path.is_file():
        raise PipelineError(f"{path}: checkpoint not found")
    checkpoint = safe_torch_load(path)
    if not isinstance(checkpoint, dict) or not {"model", "config", "epoch"} <= checkpoint.keys():
        raise PipelineError(f"{path}: not a pipeline checkpoint (no model/config/epoch entries)")
    return checkpoint


def versions() -> dict[str, str]:
    found = {"pipeline": __version__, "python": platform.python_version(), "torch": torch.__version__,
             "torchvision": torchvision.__version__, "numpy": np.__version__}
    return {name: str(version) for name, version in found.items()}


def train(config: TrainConfig, dataset_root: Path | None = None, weights_root: Path | None = None,
          console: Console | None = None) -> TrainResult:
    """Start a new run under `weights_root` (default ./weights)."""
    config.validate()
    run_dir = new_run_dir(weights_root or weights_dir(), config.name)
    config.name = run_dir.name
    try:
        return _fit(config, run_dir, dataset_root or dataset_dir(), console or Console(), checkpoint=None)
    except BaseException:
        if not (run_dir / "last.pt").exists():  # failed before its first epoch: leave no empty run behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def resume(run_dir: Path, overrides: dict | None = None, dataset_root: Path | None = None,
           console: Console | None = None) -> TrainResult:
    """Continue `run_dir` from its `last.pt`; only `RESUME_OVERRIDES` may differ from the run's options."""
    overrides = overrides or {}
    fixed = sorted(set(overrides) - RESUME_OVERRIDES)
    if fixed:
        flags = ", ".join("--" + k.replace("_", "-") for k in fixed)
        raise PipelineError(f"{flags} cannot change when resuming {run_dir}; start a new run instead")
    if not run_dir.is_dir():
        raise PipelineError(f"{run_dir}: no such run folder")
    checkpoint = load_checkpoint(run_dir / "last.pt")
    config = TrainConfig(**{**checkpoint["config"]["options"], **overrides})
    config.validate()
    if checkpoint["epoch"] >= config.epochs:
        raise PipelineError(
            f"{run_dir} already finished its {checkpoint['epoch']} epochs; pass --epochs N (N > {checkpoint['epoch']}) to train longer"
        )
    return _fit(config, run_dir, dataset_root or dataset_dir(), console or Console(), checkpoint)


def _loader(dataset: PngDataset, batch_size: int, workers: int, device: torch.device,
            generator: torch.Generator | None = None) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=generator is not None, generator=generator,
                      num_workers=workers, pin_memory=device.type == "cuda")


def _subset(data: LabeledImages, indices: np.ndarray, transform) -> PngDataset:
    return PngDataset(data.image_dir, [data.ids[i] for i in indices], data.targets[indices], transform)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator behind one epoch's shuffle and augmentation: a function of (seed, epoch) alone."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))


def _fit(config: TrainConfig, run_dir: Path, dataset_root: Path, console: Console, checkpoint: dict | None) -> TrainResult:
    device = resolve_device(config.device)
    data = load_train_set(dataset_root, config.limit)
    train_idx, val_idx = stratified_split(data.targets, config.val_fraction, config.seed)
    size = image_size(data.image_dir / f"{data.ids[0]}.png")
    run_config = {
        "options": asdict(config),
        "classes": data.classes,
        "image_size": list(size),
        "mean": list(CIFAR10_MEAN),
        "std": list(CIFAR10_STD),
        "split": {"seed": config.seed, "val_fraction": config.val_fraction,
                  "train_images": len(train_idx), "val_images": len(val_idx)},
        "dataset": str(dataset_root),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if checkpoint is not None:
        if checkpoint["config"]["classes"] != data.classes:
            raise PipelineError(f"{dataset_root}: its classes differ from those {run_dir.name} was trained on")
        run_config["created"] = checkpoint["config"]["created"]

    torch.manual_seed(config.seed)
    model = build_model(config.model, len(data.classes), config.stem)
    if config.pretrained and checkpoint is None:
        skipped = load_pretrained(model, Path(config.pretrained))
        console.print(f"loaded {config.pretrained} (not loaded: {', '.join(skipped) or 'nothing'})")
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=config.milestones, gamma=config.gamma)
    history: list[dict] = []
    start_epoch, best_acc, best_epoch = 0, 0.0, 0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        start_epoch, best_acc, best_epoch = checkpoint["epoch"], checkpoint["best_acc"], checkpoint["best_epoch"]
        torch.set_rng_state(checkpoint["rng"]["torch"])
        if device.type == "cuda" and checkpoint["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
        if (run_dir / "metrics.csv").is_file():
            history = pd.read_csv(run_dir / "metrics.csv").query("epoch <= @start_epoch").to_dict("records")
    write_text_atomic(run_dir / "config.json", json.dumps(run_config, indent=2) + "\n")

    mean, std = CIFAR10_MEAN, CIFAR10_STD
    train_set = _subset(data, train_idx, train_transform(size, mean, std))
    val_set = _subset(data, val_idx, eval_transform(mean, std))
    val_loader = _loader(val_set, EVAL_BATCH, config.workers, device)
    criterion = nn.CrossEntropyLoss()
    writer = SummaryWriter(run_dir / "tb", purge_step=start_epoch + 1 if checkpoint else None)
    console.print(
        f"run {run_dir}: {config.model} ({config.stem} stem) on {device}, {len(train_idx)} train / "
        f"{len(val_idx)} val images, {len(data.classes)} classes, epochs {start_epoch + 1}-{config.epochs}"
    )
    epoch = start_epoch
    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            lr = optimizer.param_groups[0]["lr"]
            loader = _loader(train_set, config.batch_size, config.workers, device, _epoch_generator(config.seed, epoch))
            started = time.perf_counter()
            train_loss, train_acc = _train_epoch(model, loader, optimizer, criterion, device, console,
                                                 f"epoch {epoch}/{config.epochs}")
            train_seconds = time.perf_counter() - started
            val_loss, val_acc, val_f1 = evaluate(model, val_loader, criterion, device, len(data.classes))
            scheduler.step()
            row = {"epoch": epoch, **{k: round(v, 6) for k, v in (
                       ("train_loss", train_loss), ("train_acc", train_acc), ("val_loss", val_loss),
                       ("val_acc", val_acc), ("val_f1", val_f1), ("lr", lr))},
                   "seconds": round(time.perf_counter() - started, 3),
                   "images_per_s": round(len(train_set) / train_seconds, 1)}
            history.append(row)
            _log_epoch(writer, row)
            with atomic_path(run_dir / "metrics.csv") as tmp:
                pd.DataFrame(history).to_csv(tmp, index=False)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "epoch": epoch, "config": run_config,
                     "rng": {"torch": torch.get_rng_state(),
                             "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else []}}
            if val_acc > best_acc:
                best_acc, best_epoch = val_acc, epoch
            state.update(best_acc=best_acc, best_epoch=best_epoch)
            if best_epoch == epoch:
                save_checkpoint(run_dir / "best.pt", state)
            save_checkpoint(run_dir / "last.pt", state)
            write_text_atomic(run_dir / "result.txt",
                              f"best val accuracy {best_acc:.4f} at epoch {best_epoch} (of {epoch} trained)\n")
            console.print(
                f"epoch {epoch}/{config.epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
                f"val loss {val_loss:.4f} acc {val_acc:.4f} F1 {val_f1:.4f}  lr {lr:.4g}  "
                f"{row['seconds']:.1f}s {row['images_per_s']:.0f} img/s"
            )
    except KeyboardInterrupt:
        if not (run_dir / "last.pt").exists():
            raise PipelineError("interrupted before the first epoch finished; nothing was kept") from None
        raise PipelineError(
            f"interrupted during epoch {epoch}; continue with `pipeline train --resume {run_dir}`"
        ) from None
    finally:
        writer.close()
    console.print(f"best val accuracy {best_acc:.4f} at epoch {best_epoch}; weights in {run_dir / 'best.pt'}")
    return TrainResult(run_dir, best_acc, best_epoch)


def _train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, criterion: nn.Module,
                 device: torch.device, console: Console, title: str) -> tuple[float, float]:
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    columns = (TextColumn(title), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.4f}"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(title, total=len(loader), loss=0.0, acc=0.0)
        for step, (images, targets) in enumerate(loader, 1):
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            logits = model(images)
            loss = criterion(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(targets)
            correct += (logits.argmax(1) == targets).sum()
            seen += len(targets)
            if step % 10 == 0 or step == len(loader):
                progress.update(task, completed=step, loss=loss_sum.item() / seen, acc=correct.item() / seen)
    return loss_sum.item() / seen, correct.item() / seen


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, criterion: nn.Module, device: torch.device,
             num_classes: int) -> tuple[float, float, float]:
    """Mean loss, accuracy and macro-F1 over a labeled loader."""
    model.eval()
    loss_sum, predictions, truth = 0.0, [], []
    for images, targets in loader:
        logits = model(images.to(device, non_blocking=True))
        loss_sum += criterion(logits, targets.to(device)).item() * len(targets)
        predictions.append(logits.argmax(1).cpu())
        truth.append(targets)
    predicted, actual = torch.cat(predictions).numpy(), torch.cat(truth).numpy()
    f1 = f1_score(actual, predicted, average="macro", labels=list(range(num_classes)), zero_division=0)
    return loss_sum / len(actual), float((predicted == actual).mean()), float(f1)


def _log_epoch(writer: SummaryWriter, row: dict) -> None:
    step = row["epoch"]
    for tag, key in (("loss/train", "train_loss"), ("loss/val", "val_loss"), ("accuracy/train", "train_acc"),
                     ("accuracy/val", "val_acc"), ("f1/val", "val_f1"), ("lr", "lr"), ("images_per_s", "images_per_s")):
        writer.add_scalar(tag, row[key], step)
    writer.flush()
