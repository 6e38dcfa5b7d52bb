"""`pipeline train`: a ResNet on the 80/20 split of dataset/, one run folder per experiment under weights/.

A run keeps `config.json`, `metrics.csv`, TensorBoard events (`tb/`), `best.pt`, `last.pt` and
`result.txt`. A checkpoint is one dict (model, optimizer, scheduler, epoch, RNG state, config);
`--resume` restores all of it, and each epoch's shuffle and augmentation draw from a generator seeded
by (seed, epoch), so a resumed CPU run ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import itertools
import json
import os
import platform
import shutil
import socket
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
from timm.utils import ModelEmaV3, unwrap_model
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from pipeline import __version__
from pipeline.augment import BATCHED_POLICIES, BatchLoader, to_device_tensor
from pipeline.checkpoint import load_checkpoint, save_checkpoint
from pipeline.config import RESUME_OVERRIDES, TrainConfig, saved_config
from pipeline.dataset import (ArrayDataset, albumentations_policy, channel_stats, run_split,
                              seed_worker_augmentation, training_arrays)
from pipeline.distributed import (Ranks, all_concat, all_sum, barrier, broadcast, init_from_env, local_device,
                                  same_on_all_ranks, sync_buffers, weights_checksum)
from pipeline.errors import PipelineError
from pipeline.models import build_model, freeze_backbone, load_pretrained
from pipeline.report import write_report
from pipeline.runtime import autocast_dtype, resolve_device
from pipeline.workspace import atomic_path, dataset_dir, weights_dir, write_text_atomic

EVAL_BATCH = 1024


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    best_acc: float | None  # None for --full runs, which have no validation split
    best_epoch: int
    weights_checksum: float = 0.0  # sum of the final weights: the same on every rank of a distributed run


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


def versions() -> dict[str, str]:
    found = {"pipeline": __version__, "python": platform.python_version(), "torch": torch.__version__,
             "torchvision": torchvision.__version__, "numpy": np.__version__}
    return {name: str(version) for name, version in found.items()}


def train(config: TrainConfig, dataset_root: Path | None = None, weights_root: Path | None = None,
          console: Console | None = None) -> TrainResult:
    """Start a new run under `weights_root` (default ./weights)."""
    config.validate()
    where = init_from_env(resolve_device(config.device))
    claimed: Path | str = ""
    if where.main:  # rank 0 names the run; the other ranks of a torchrun job learn it from rank 0
        try:
            claimed = new_run_dir(weights_root or weights_dir(), config.name)
        except PipelineError as e:
            claimed = str(e)
    claimed = broadcast(claimed, where)
    if isinstance(claimed, str):
        raise PipelineError(claimed)
    run_dir = claimed
    config.name = run_dir.name
    try:
        return _fit(config, run_dir, dataset_root or dataset_dir(), console or Console(), checkpoint=None)
    except BaseException:
        if where.main and not (run_dir / "last.pt").exists():  # failed before its first epoch: leave no empty run
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
    config = saved_config({**checkpoint["config"]["options"], **overrides}, run_dir / "last.pt")
    config.validate()
    if checkpoint["epoch"] >= config.epochs:
        raise PipelineError(
            f"{run_dir} already finished its {checkpoint['epoch']} epochs; pass --epochs N (N > {checkpoint['epoch']}) to train longer"
        )
    return _fit(config, run_dir, dataset_root or dataset_dir(), console or Console(), checkpoint)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator behind one epoch's shuffle and augmentation: a function of (seed, epoch) alone."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))


class TrainBatches:
    """One epoch's training batches: the batched on-device path, or albumentations in DataLoader workers."""

    def __init__(self, config: TrainConfig, images: np.ndarray, targets: np.ndarray, device: torch.device,
                 mean: tuple[float, ...], std: tuple[float, ...], where: Ranks = Ranks()):
        self.config, self.device, self.where = config, device, where
        self.memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        if config.aug in BATCHED_POLICIES:
            self.images = to_device_tensor(images, device)
            self.targets = torch.from_numpy(targets).to(device)
            self.mean, self.std = mean, std
        else:
            self.dataset = ArrayDataset(images, targets, albumentations_policy(config.aug, mean, std, config.img_size))
        self.steps = -(-len(images) // config.batch_size)

    def epoch(self, epoch: int):
        """One epoch's batches; with N ranks each takes its 1/N of every global batch of --batch-size."""
        generator = _epoch_generator(self.config.seed, epoch)
        shard = (self.where.rank, self.where.world)
        if self.config.aug in BATCHED_POLICIES:
            return BatchLoader(self.images, self.targets, self.config.batch_size, self.mean, self.std,
                               BATCHED_POLICIES[self.config.aug], generator, self.memory_format, self.config.img_size,
                               shard)
        self.dataset.transform.set_random_seed(int(torch.randint(2**31, (1,), generator=generator)) + self.where.rank)
        sampler = DistributedSampler(self.dataset, *shard[::-1], shuffle=True, seed=self.config.seed)
        sampler.set_epoch(epoch)
        return DataLoader(self.dataset, batch_size=max(1, self.config.batch_size // self.where.world), sampler=sampler,
                          num_workers=self.config.workers, worker_init_fn=seed_worker_augmentation,
                          pin_memory=self.device.type == "cuda")


def _optimizer(config: TrainConfig, model: nn.Module, device: torch.device, steps_per_epoch: int):
    """SGD (fused on CUDA) over the trainable parameters and its schedule; returns (optimizer, scheduler,
    whether it steps per batch)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                                weight_decay=config.weight_decay, fused=device.type == "cuda" or None)
    if config.schedule == "onecycle":
        total = config.epochs * steps_per_epoch
        if total < 4:
            raise PipelineError(f"--schedule onecycle needs at least 4 steps, this run has {total}: train longer")
        scheduler = torch.optim.lr_scheduler.OneCycleLR(  # warm up ≥ 2 steps; --momentum stays as given
            optimizer, max_lr=config.lr, total_steps=total, pct_start=max(0.25, 2 / total), cycle_momentum=False)
        return optimizer, scheduler, True
    return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, config.milestones, config.gamma), False


def _fit(config: TrainConfig, run_dir: Path, dataset_root: Path, console: Console, checkpoint: dict | None) -> TrainResult:
    device = resolve_device(config.device)
    where = init_from_env(device)
    device = local_device(device, where)
    console = console if where.main else Console(quiet=True)
    amp_dtype = autocast_dtype(config.precision, device)
    if not where.main:
        barrier(where)  # rank 0 decodes the cache first; the others then read it
    data = training_arrays(dataset_root, config.skip_bad, config.limit, console)
    if where.main:
        barrier(where)
    images, targets = data.images, data.targets
    train_idx, val_idx = run_split(targets, config.val_fraction, config.seed, config.full)
    train_images = images[train_idx]
    # normalisation from the training split (kept from the first epoch when resuming)
    mean, std = (checkpoint["config"]["mean"], checkpoint["config"]["std"]) if checkpoint else channel_stats(train_images)
    channels = images.shape[3]
    run_config = {
        "options": asdict(config),
        "skipped": len(data.skipped),
        "classes": data.classes,
        "image_size": list(images.shape[1:3]),
        "channels": channels,
        "mean": list(mean),
        "std": list(std),
        "split": {"seed": config.seed, "val_fraction": 0.0 if config.full else config.val_fraction,
                  "train_images": len(train_idx), "val_images": len(val_idx)},
        "precision": "bf16" if amp_dtype else "fp32",
        "dataset": str(dataset_root),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
                  + (f" × {where.world} processes" if where.distributed else ""),
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if checkpoint is not None:
        if checkpoint["config"]["classes"] != data.classes:
            raise PipelineError(f"{dataset_root}: its classes differ from those {run_dir.name} was trained on")
        if config.schedule == "onecycle" and config.epochs != checkpoint["config"]["options"]["epochs"]:
            raise PipelineError("--epochs cannot change when resuming a onecycle run: its schedule spans the epochs")
        run_config["created"] = checkpoint["config"]["created"]

    batches = TrainBatches(config, train_images, targets[train_idx], device, mean, std, where)
    del train_images
    own_val = val_idx[where.rank::where.world]  # each rank scores its share; the metrics are reduced over all
    val_loader = (BatchLoader(to_device_tensor(images[own_val], device), torch.from_numpy(targets[own_val]).to(device),
                              EVAL_BATCH, mean, std, memory_format=batches.memory_format, img_size=config.img_size)
                  if len(val_idx) else None)
    torch.manual_seed(config.seed)
    model = build_model(config.model, len(data.classes), config.stem, channels, config.head_dropout)
    if config.pretrained and checkpoint is None:
        notes = load_pretrained(model, Path(config.pretrained), config.model)
        console.print(f"loaded {config.pretrained}; not loaded or adapted: {', '.join(notes) or 'nothing'}")
    if config.sync_bn and where.distributed:
        if device.type != "cuda":
            raise PipelineError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU implementation)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    frozen_norms = freeze_backbone(model) if config.freeze_backbone else []
    model.to(device, memory_format=batches.memory_format)
    optimizer, scheduler, per_step = _optimizer(config, model, device, batches.steps)
    # EMA decay warms up with the step count (timm), so short runs average sensibly too
    ema = ModelEmaV3(model, decay=config.ema, use_warmup=True) if config.ema else None
    history: list[dict] = []
    start_epoch, best_acc, best_epoch = 0, 0.0, 0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        if ema is not None:
            ema.module.load_state_dict(checkpoint["ema"])
        start_epoch, best_acc, best_epoch = checkpoint["epoch"], checkpoint["best_acc"], checkpoint["best_epoch"]
        torch.set_rng_state(checkpoint["rng"]["torch"])
        if device.type == "cuda" and checkpoint["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
        if (run_dir / "metrics.csv").is_file():
            history = pd.read_csv(run_dir / "metrics.csv").query("epoch <= @start_epoch").to_dict("records")
    if where.main:
        write_text_atomic(run_dir / "config.json", json.dumps(run_config, indent=2) + "\n")
        if data.skipped:
            write_text_atomic(run_dir / "skipped.txt", "\n".join(data.skipped) + "\n")
            console.print(f"--skip-bad: left out {len(data.skipped)} problem file(s) or row(s), listed in {run_dir / 'skipped.txt'}")
        set_status(run_dir, "running")

    # DistributedDataParallel averages the gradients over the ranks after every backward pass
    replicated = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if where.distributed else model
    step_model = torch.compile(replicated) if config.compile else replicated
    eval_model = ema.module if ema is not None else model
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    writer = SummaryWriter(run_dir / "tb", purge_step=start_epoch + 1 if checkpoint else None) if where.main else None
    console.print(
        f"run {run_dir}: {config.recipe} recipe, {config.model} ({config.stem} stem) on {device} "
        f"({run_config['precision']}), {len(train_idx)} train / {len(val_idx)} val images, "
        f"{len(data.classes)} classes, epochs {start_epoch + 1}-{config.epochs}"
    )
    epoch = start_epoch
    wall = history[-1]["wall_s"] if history else 0.0
    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            lr = optimizer.param_groups[0]["lr"]
            started = time.perf_counter()
            train_loss, train_acc = _train_epoch(step_model, frozen_norms, batches.epoch(epoch), optimizer,
                                                 scheduler if per_step else None, ema, (epoch - 1) * batches.steps,
                                                 criterion, device, amp_dtype, console, f"epoch {epoch}/{config.epochs}",
                                                 where)
            train_seconds = time.perf_counter() - started
            if val_loader is not None:
                sync_buffers(eval_model, where)
                val_loss, val_acc, val_f1 = evaluate(eval_model, val_loader, device, len(data.classes), amp_dtype, where)
            else:
                val_loss = val_acc = val_f1 = float("nan")
            if not per_step:
                scheduler.step()
            seconds = time.perf_counter() - started
            wall += seconds
            row = {"epoch": epoch, **{k: round(v, 6) for k, v in (
                       ("train_loss", train_loss), ("train_acc", train_acc), ("val_loss", val_loss),
                       ("val_acc", val_acc), ("val_f1", val_f1), ("lr", lr))},
                   "seconds": round(seconds, 3), "wall_s": round(wall, 3),
                   "images_per_s": round(len(train_idx) / train_seconds, 1)}
            history.append(row)
            if val_loader is None or val_acc > best_acc:
                best_acc, best_epoch = (val_acc, epoch) if val_loader is not None else (best_acc, epoch)
            reached = config.target_acc is not None and val_acc >= config.target_acc
            if where.main:  # only rank 0 writes: metrics, TensorBoard, checkpoints
                _log_epoch(writer, row)
                with atomic_path(run_dir / "metrics.csv") as tmp:
                    pd.DataFrame(history).to_csv(tmp, index=False)
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "epoch": epoch, "config": run_config,
                         "best_acc": best_acc, "best_epoch": best_epoch,
                         "rng": {"torch": torch.get_rng_state(),
                                 "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else []}}
                if ema is not None:
                    state["ema"] = ema.module.state_dict()
                if best_epoch == epoch:
                    save_checkpoint(run_dir / "best.pt", state)
                save_checkpoint(run_dir / "last.pt", state)
                write_text_atomic(run_dir / "result.txt", _result_text(config, history, best_acc, best_epoch, reached))
            console.print(
                f"epoch {epoch}/{config.epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
                + (f"val loss {val_loss:.4f} acc {val_acc:.4f} F1 {val_f1:.4f}  " if val_loader is not None else "")
                + f"lr {lr:.4g}  {seconds:.1f}s {row['images_per_s']:.0f} img/s"
            )
            if reached:
                console.print(f"reached val accuracy {val_acc:.4f} ≥ {config.target_acc} at epoch {epoch} after {wall:.1f}s")
                break
    except KeyboardInterrupt:
        if where.main:
            set_status(run_dir, "interrupted")
        if not (run_dir / "last.pt").exists():
            raise PipelineError("interrupted before the first epoch finished; nothing was kept") from None
        raise PipelineError(
            f"interrupted during epoch {epoch}; continue with `pipeline train --resume {run_dir}`"
        ) from None
    except BaseException as e:
        if where.main:
            set_status(run_dir, "failed", error=str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise
    finally:
        if writer is not None:
            writer.close()
    checksum = weights_checksum(model)
    if not same_on_all_ranks(checksum, device, where):
        raise PipelineError(f"{run_dir}: the {where.world} processes ended with different weights; not trusting this run")
    if where.main:
        _log_hparams(run_dir, config, history, best_acc)
        set_status(run_dir, "finished")
        written = write_report(run_dir, dataset_root, config.device, console)
        console.print(f"report: {', '.join(str(path) for path in written)}")
    if val_loader is None:
        console.print(f"trained on all {len(train_idx)} images; weights of epoch {best_epoch} in {run_dir / 'best.pt'}")
        return TrainResult(run_dir, None, best_epoch, checksum)
    console.print(f"best val accuracy {best_acc:.4f} at epoch {best_epoch}; weights in {run_dir / 'best.pt'}")
    return TrainResult(run_dir, best_acc, best_epoch, checksum)


def _result_text(config: TrainConfig, history: list[dict], best_acc: float, best_epoch: int, reached: bool) -> str:
    last = history[-1]
    if config.full:
        return f"trained on all labeled images for {last['epoch']} epochs (no validation); best.pt is the last epoch\n"
    text = f"best val accuracy {best_acc:.4f} at epoch {best_epoch} (of {last['epoch']} trained, {last['wall_s']:.1f}s)\n"
    if reached:
        text += f"time to val accuracy {config.target_acc}: {last['wall_s']:.1f}s (epoch {last['epoch']})\n"
    return text


def _train_epoch(model: nn.Module, frozen_norms: list[nn.Module], batches, optimizer: torch.optim.Optimizer, scheduler, ema: ModelEmaV3 | None,
                 first_step: int, criterion: nn.Module, device: torch.device, amp_dtype: torch.dtype | None, console: Console,
                 title: str, where: Ranks = Ranks()) -> tuple[float, float]:
    """One epoch of SGD steps; returns the mean loss and accuracy over the images of all ranks."""
    model.train()
    for norm in frozen_norms:  # a frozen backbone keeps its normalisation statistics too
        norm.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    columns = (TextColumn(title), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.4f}"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(title, total=len(batches), loss=0.0, acc=0.0)
        for step, (images, targets) in enumerate(batches, 1):
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits = model(images)
                loss = criterion(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update(unwrap_model(model), step=first_step + step)
            loss_sum += loss.detach() * len(targets)
            correct += (logits.argmax(1) == targets).sum()
            seen += len(targets)
            if step % 10 == 0 or step == len(batches):
                progress.update(task, completed=step, loss=loss_sum.item() / seen, acc=correct.item() / seen)
    total_loss, total_correct, total_seen = all_sum([loss_sum.item(), correct.item(), seen], device, where)
    return total_loss / total_seen, total_correct / total_seen


@torch.no_grad()
def evaluate(model: nn.Module, batches, device: torch.device, num_classes: int,
             amp_dtype: torch.dtype | None = None, where: Ranks = Ranks()) -> tuple[float, float, float]:
    """Mean cross-entropy, accuracy and macro-F1 over labeled batches (each rank's share, put together)."""
    model.eval()
    loss_sum, predictions, truth = 0.0, [], []
    for images, targets in batches:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(images)
        loss_sum += nn.functional.cross_entropy(logits.float(), targets, reduction="sum").item()
        predictions.append(logits.argmax(1).cpu())
        truth.append(targets.cpu())
    own = (torch.cat(predictions).numpy(), torch.cat(truth).numpy()) if predictions else (np.zeros(0, int),) * 2
    predicted, actual = all_concat(own[0], where), all_concat(own[1], where)
    (loss_sum,) = all_sum([loss_sum], device, where)
    f1 = f1_score(actual, predicted, average="macro", labels=list(range(num_classes)), zero_division=0)
    return loss_sum / len(actual), float((predicted == actual).mean()), float(f1)


def set_status(run_dir: Path, state: str, **details) -> None:
    """`status.json`: running (with the process, so `pipeline runs` can tell a crash), finished, interrupted, failed."""
    status = {"state": state, "pid": os.getpid(), "host": socket.gethostname(),
              "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"), **details}
    write_text_atomic(run_dir / "status.json", json.dumps(status) + "\n")


def _log_hparams(run_dir: Path, config: TrainConfig, history: list[dict], best_acc: float) -> None:
    """The run's options with its final metrics, for TensorBoard's HPARAMS tab across runs."""
    options = {key: value if isinstance(value, (int, float, str, bool)) else str(value)
               for key, value in asdict(config).items()
               if key not in ("name", "device", "workers", "compile", "limit", "target_acc")}
    best = max(history, key=lambda row: row["val_acc"]) if not config.full else history[-1]
    metrics = {"hparam/wall_s": history[-1]["wall_s"], "hparam/epochs_trained": history[-1]["epoch"]}
    if not config.full:
        metrics.update({"hparam/best_val_acc": best_acc, "hparam/val_f1_at_best": best["val_f1"]})
    with SummaryWriter(run_dir / "tb") as writer:
        for summary in hparams(options, metrics):
            writer.file_writer.add_summary(summary)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value)


def _log_epoch(writer: SummaryWriter, row: dict) -> None:
    step = row["epoch"]
    for tag, key in (("loss/train", "train_loss"), ("loss/val", "val_loss"), ("accuracy/train", "train_acc"),
                     ("accuracy/val", "val_acc"), ("f1/val", "val_f1"), ("lr", "lr"), ("images_per_s", "images_per_s")):
        if not np.isnan(row[key]):
            writer.add_scalar(tag, row[key], step)
    writer.flush()
