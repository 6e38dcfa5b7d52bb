"""`pipeline train`: a ResNet on the seeded 80/20 split of dataset/, one run folder per experiment
under weights/ (pipeline/run.py owns its files).

`setup` gathers everything a run needs into one `TrainContext`; `fit` is the epoch loop:
`train_one_epoch` → `evaluate` → log → save. A checkpoint is one dict (model, optimizer, scheduler,
epoch, RNG state, config); `--resume` restores all of it, and each epoch's shuffle and augmentation draw
from a generator seeded by (seed, epoch), so a resumed CPU run ends with the same weights as an
uninterrupted one. The run's report is drawn from the best epoch's val predictions, which `evaluate` returns.
"""
from __future__ import annotations

import contextlib
import math
import platform
import shutil
import signal
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision
from rich.console import Console
from sklearn.metrics import f1_score
from timm.optim import Lookahead
from timm.utils import ModelEmaV3, unwrap_model
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from pipeline import __version__
from pipeline.augment import BATCHED_POLICIES, BatchLoader, alternating_flips, resize, to_device_tensor
from pipeline.config import (OPTION, RESUME_OVERRIDES, SPANNING_SCHEDULES, TrainConfig, has_stem, model_label,
                             model_of_weights)
from pipeline.dataset import (ArrayDataset, TrainArrays, albumentations_policy, channel_stats, check_decoded_size,
                              run_split, seed_worker_augmentation, training_arrays)
from pipeline.distributed import (all_concat, all_objects, all_sum, broadcast, rank_zero_first, same_on_all_ranks,
                                  broadcast_buffers, weights_checksum)
from pipeline.errors import Interrupted, PipelineError
from pipeline.figures import ValPredictions, draw_report
from pipeline.competition import read_competition
from pipeline.infer import default_batch_size, explainer, infer, normalised_batch
from pipeline.layout import class_difference, labels_key
from pipeline.metrics import METRIC_LABELS, metric_score
from pipeline.models import build_model, check_input_size, freeze_backbone, load_pretrained
from pipeline.models.weights import weights_file
from pipeline.progress import progress_bar
from pipeline.precision import choose, installed_version, training_trial
from pipeline.run import (CheckpointSaver, CrossValidation, Run, RunConfig, claim_run, inference_weights, load_checkpoint,
                          predictions_digest, resolve_run, summarize_metrics)
from pipeline.runtime import Runtime, resolve_runtime
from pipeline.teach import (Teaching, TaughtLoss, lineage, pretrained_leak, pretrained_trained_on, seen_images,
                            taught)
from pipeline.workspace import check_folder, created_folder, dataset_dir, weights_dir


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    metric: str  # what ranked the epochs
    best_score: float | None  # the best epoch's val score; None for --full runs, which have no validation split
    best_epoch: int
    weights_checksum: float = 0.0  # sum of the final weights: the same on every rank of a distributed run
    averaged_score: float | None = None  # --average-top: what best.pt (the average) scores on val


@dataclass(frozen=True)
class Evaluation:
    loss: float
    acc: float
    f1: float  # macro-F1
    score: float  # of the run's metric
    predictions: ValPredictions


@dataclass
class TrainContext:
    """Everything one run needs, made by `setup`."""

    config: TrainConfig
    run: Run
    run_config: RunConfig
    runtime: Runtime
    console: Console
    batches: TrainBatches
    val_images: torch.Tensor | None  # this rank's share of the val split, uint8 (N, H, W, C) on the device
    val_targets: np.ndarray
    val_indices: np.ndarray  # this rank's val images' indices in the labeled set
    labeled: TrainArrays  # the labeled set (its images: the decoded cache), for the report's error analysis
    model: nn.Module  # the bare model, whose weights are saved
    step_model: nn.Module  # what the steps run: the model, DDP-wrapped and/or compiled
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    per_step: bool  # the scheduler steps per batch (one-cycle), else per epoch
    ema: ModelEmaV3 | None
    frozen_norms: list[nn.Module]
    saver: CheckpointSaver
    criterion: nn.Module
    scaler: torch.amp.GradScaler  # fp16: scales the loss against gradient underflow; otherwise a no-op
    seen_images: torch.Tensor | None = None  # `teach.seen_images`, kept in every checkpoint
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 0
    epoch: int = 0  # the epoch in progress
    finishing: bool = False  # every epoch is saved; the run's report is being drawn

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model


def versions() -> dict[str, str]:
    found = {"pipeline": __version__, "python": platform.python_version(), "torch": torch.__version__,
             "torchvision": torchvision.__version__, "numpy": np.__version__}
    found |= {library: installed_version(library) for library in ("openvino", "onnxruntime")}
    return {name: str(version) for name, version in found.items() if version is not None}


def train(config: TrainConfig, dataset_root: Path | None = None, weights_root: Path | None = None,
          console: Console | None = None) -> TrainResult:
    """Start a new run under `weights_root` (default ./weights)."""
    config.validate()
    runtime = resolve_runtime(config.device, config.precision, config.threads)
    with created_folder(weights_root or weights_dir(), tidy=runtime.ranks.main) as weights:  # nor an empty weights/
        run = _claim(weights, config.name, runtime)
        config.name = run.name
        try:
            ctx = setup(config, run, dataset_root or dataset_dir(), runtime, console or Console(), resumed=None)
            return fit(ctx)
        except BaseException:
            if runtime.ranks.main and not run.last.exists():  # failed before its first epoch: leave no empty run
                shutil.rmtree(run.path, ignore_errors=True)
            raise


def _claim(weights_root: Path, name: str | None, runtime: Runtime) -> Run:
    """Rank 0 claims the run folder; the other ranks of a torchrun job learn it from rank 0. Should that
    exchange fail, rank 0 takes its new, empty folder back."""
    claimed: Run | str = ""
    if runtime.ranks.main:
        try:
            claimed = claim_run(weights_root, name)
        except PipelineError as e:
            claimed = str(e)
    try:
        claimed = broadcast(claimed, runtime.ranks)
    except BaseException:
        if isinstance(claimed, Run):
            shutil.rmtree(claimed.path, ignore_errors=True)
        raise
    if isinstance(claimed, str):
        raise PipelineError(claimed)
    return claimed


def resume(run_dir: Path, overrides: dict | None = None, dataset_root: Path | None = None,
           console: Console | None = None) -> TrainResult:
    """Continue `run_dir` from its last checkpoint; only `RESUME_OVERRIDES` may differ from the run's options."""
    overrides = overrides or {}
    run = Run(resolve_run(run_dir))
    if CrossValidation(run.path).is_cv():
        raise PipelineError(f"{run.path}: a cross-validation; resume one of its folds, `pipeline train --resume "
                            f"{run.path}/fold-I`, then train the CV again to gather it")
    training = run.training_pid()
    if training is not None:
        raise PipelineError(f"{run.path}: still training (process {training}); resume it once that stops (if that "
                            f"process is not this training, delete {run.status_file})")
    if not run.last.is_file() and not run.looks_like_run():
        raise PipelineError(f"{run.path}: not a run folder (no config.json, no last.pt): nothing to resume; train a new "
                            "run with `pipeline train`")
    if not run.last.is_file():
        raise PipelineError(f"{run.last}: not found, so the run cannot continue from it; restore it from a copy, or "
                            f"start a new run (`pipeline train --config {run.path}`; its best.pt can still predict)")
    if run.has_config():  # its options, classes and split those last.pt records (not another run's checkpoint)
        run.checked_config()
    for folder in (run.tensorboard, run.top):  # before the run is marked running: tb/ is opened, top/ made later
        check_folder(folder)
    problem = run.best_problem() if run.best.is_file() else None
    if problem:  # kept as best unless a later epoch beats it
        raise PipelineError(f"{run.best}: {problem}; restore it from a copy before resuming")
    checkpoint = load_checkpoint(run.last)
    if "best_acc" in checkpoint:  # written before --metric, when accuracy ranked every run
        checkpoint["best_score"] = checkpoint.pop("best_acc")
    saved = RunConfig.of_checkpoint(checkpoint, run.last)
    missing = sorted(RESUME_ENTRIES - checkpoint.keys()) + (["ema"] if saved.options.ema and "ema" not in checkpoint else [])
    if missing:
        raise PipelineError(f"{run.last}: lacks {', '.join(missing)}, so the run cannot continue from it; start a new "
                            "run (its best.pt can still predict)")
    fixed = [key for key in sorted(set(overrides) - RESUME_OVERRIDES)
             if _comparable(overrides[key]) != _comparable(getattr(saved.options, key))]
    if fixed:
        flags = [f"--{key.replace('_', '-')}" for key in fixed]
        was = ", ".join(f"{flag} {_comparable(getattr(saved.options, key))}" for flag, key in zip(flags, fixed))
        raise PipelineError(f"{', '.join(flags)} cannot change when resuming {run_dir} (it trains with {was}); start "
                            "a new run instead")
    config = TrainConfig(**{**asdict(saved.options), **overrides})
    config.validate()
    spanning = saved.options.schedule if saved.options.schedule in SPANNING_SCHEDULES else \
        "--lookahead" if saved.options.lookahead else None
    finished = (run.read_status() or {}).get("state") == "finished"  # else stopped before its end: finish it
    if finished and checkpoint["epoch"] >= saved.options.epochs and spanning:
        raise PipelineError(f"{run_dir} finished its {spanning} schedule, which spans its epochs; to train "
                            f"longer, start a new run: pipeline train --config {run.path} --epochs N")
    if finished and checkpoint["epoch"] >= config.epochs:
        raise PipelineError(
            f"{run_dir} already finished its {checkpoint['epoch']} epochs; pass --epochs N (N > {checkpoint['epoch']}) to train longer"
        )
    if spanning and config.epochs != saved.options.epochs:
        raise PipelineError(f"--epochs cannot change when resuming a {spanning} run: its schedule spans the epochs")
    runtime = resolve_runtime(config.device, config.precision, config.threads)
    console = console or Console()
    if run.onnx.is_file():
        console.print(f"note: {run.onnx} was exported from best.pt as it is; it is deleted when a better epoch "
                      f"replaces best.pt (then `pipeline export {run.path}` again)")
    return fit(setup(config, run, dataset_root or dataset_dir(), runtime, console, (checkpoint, saved)))


def _comparable(value: object) -> object:
    """An option's value as the command line and a saved config both give it (a list where one has a tuple)."""
    return list(value) if isinstance(value, tuple) else value


RESUME_ENTRIES = frozenset({"optimizer", "scheduler", "rng", "best_score", "best_epoch"})  # besides load_checkpoint's


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator behind one epoch's shuffle and augmentation: a function of (seed, epoch) alone."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))


class TrainBatches:
    """One epoch's training batches: the batched on-device path, or albumentations in DataLoader workers."""

    def __init__(self, config: TrainConfig, images: np.ndarray, targets: np.ndarray, classes: int, runtime: Runtime,
                 mean: tuple[float, ...], std: tuple[float, ...]):
        self.config, self.device, self.where = config, runtime.device, runtime.ranks
        self.memory_format = runtime.memory_format
        if config.aug in BATCHED_POLICIES:
            self.policy = replace(BATCHED_POLICIES[config.aug], erase=config.erase, mixup=config.mixup,
                                  cutmix=config.cutmix, classes=classes)
            self.images = to_device_tensor(images, self.device)
            self.targets = torch.from_numpy(targets).to(self.device)
            self.mean, self.std = mean, std
        else:
            self.dataset = ArrayDataset(images, targets, albumentations_policy(config.aug, mean, std, config.img_size))
        self.steps = len(self.epoch(0))  # batches per epoch on this rank (the same on every rank)
        if self.steps == 0:
            raise PipelineError(f"{len(images)} training image(s) make no batch of 2 or more per process; use more "
                                "images (raise or drop --limit)")

    def epoch(self, epoch: int):
        """One epoch's batches; with N ranks each takes its 1/N of every global batch of --batch-size."""
        generator = _epoch_generator(self.config.seed, epoch)
        shard = (self.where.rank, self.where.world)
        if self.config.aug in BATCHED_POLICIES:
            flips = alternating_flips(len(self.images), self.config.seed, epoch) if self.policy.alternate_flip else None
            return BatchLoader(self.images, self.targets, self.config.batch_size, self.mean, self.std,
                               self.policy, generator, self.memory_format, self.config.img_size,
                               shard, flips)
        self.dataset.transform.set_random_seed(int(torch.randint(2**31, (1,), generator=generator)) + self.where.rank)
        sampler = DistributedSampler(self.dataset, *shard[::-1], shuffle=True, seed=self.config.seed)
        sampler.set_epoch(epoch)
        batch_size = max(1, self.config.batch_size // self.where.world)
        # forking a process where OpenVINO runs its thread pool (a prediction earlier in this Python session)
        # crashed it; a fork server starts the workers from a clean process instead
        context = "forkserver" if self.config.workers and "openvino" in sys.modules else None
        return DataLoader(self.dataset, batch_size=batch_size, sampler=sampler, num_workers=self.config.workers,
                          worker_init_fn=seed_worker_augmentation, pin_memory=self.device.type == "cuda",
                          drop_last=len(sampler) % batch_size == 1,  # BatchNorm cannot train on a batch of 1
                          multiprocessing_context=context)


NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def param_groups(config: TrainConfig, model: nn.Module) -> list[dict]:
    """The trainable parameters as optimizer groups, each with its `lr_scale` (of --lr): with --norm-bias-lr F the
    normalisation layers' biases form a group of their own at F × lr and weight decay ÷ F, so that their decay per
    step stays (airbench trains its BatchNorm biases so, at 64×)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if config.norm_bias_lr == 1:
        return [dict(params=trainable, lr_scale=1.0)]
    biases = {id(m.bias) for m in model.modules() if isinstance(m, NORM_LAYERS) and m.bias is not None}
    groups = [dict(params=[p for p in trainable if id(p) not in biases], lr_scale=1.0),
              dict(params=[p for p in trainable if id(p) in biases], lr_scale=config.norm_bias_lr,
                   lr=config.lr * config.norm_bias_lr, weight_decay=config.weight_decay / config.norm_bias_lr)]
    return [group for group in groups if group["params"]]


def optimizer_and_schedule(config: TrainConfig, model: nn.Module, device: torch.device, steps_per_epoch: int):
    """The optimizer (timm's factory; fused on CUDA where torch has it; --momentum is SGD's momentum and the Adam
    family's first beta) over the trainable parameters, and its schedule; returns (optimizer, scheduler, whether
    it steps per batch). Weight decay applies to every parameter, as it always did here (and as resumed runs'
    optimizer states expect)."""
    from timm.optim import create_optimizer_v2

    name = {"sgd": "nesterov" if config.nesterov else "momentum"}.get(config.optimizer, config.optimizer)
    extra = {"fused": True} if device.type == "cuda" and config.optimizer in ("sgd", "adam", "adamw") else {}
    if config.optimizer != "sgd":  # --momentum is the first beta of the Adam family (as fastai's `mom`)
        extra["betas"] = (config.momentum, 0.99 if config.optimizer == "lion" else 0.999)
    optimizer = create_optimizer_v2(param_groups(config, model), opt=name, lr=config.lr,
                                    weight_decay=config.weight_decay, momentum=config.momentum,
                                    filter_bias_and_bn=False, **extra)
    if config.lookahead:
        optimizer = Lookahead(optimizer, alpha=1.0, k=LOOKAHEAD_STEPS)  # alpha: set every step (lookahead_alpha)
    total = config.epochs * steps_per_epoch
    if config.schedule in ("onecycle", "triangle"):
        if total < 4:
            raise PipelineError(f"--schedule {config.schedule} needs at least 4 steps, this run has {total}: train longer")
        shape = (dict(pct_start=max(0.25, 2 / total)) if config.schedule == "onecycle" else  # warm up ≥ 2 steps
                 dict(pct_start=max(0.23, 2 / total), anneal_strategy="linear", div_factor=5, final_div_factor=0.2 / 0.07))
        scheduler = torch.optim.lr_scheduler.OneCycleLR(  # --momentum stays as given
            optimizer, max_lr=[config.lr * group["lr_scale"] for group in optimizer.param_groups], total_steps=total,
            cycle_momentum=False, **shape)
        return optimizer, scheduler, True
    if config.schedule == "cosine":
        warmup = round(config.warmup_epochs * steps_per_epoch)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total - warmup, 1))
        if not warmup:
            return optimizer, cosine, True
        ramp = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warmup)
        return optimizer, torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, cosine], [warmup]), True
    return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, config.milestones, config.gamma), False


def _run_config(config: TrainConfig, data: TrainArrays, split: tuple[np.ndarray, np.ndarray], dataset_root: Path,
                runtime: Runtime, saved: RunConfig | None, teaching: Teaching | None = None,
                val_leak: str | None = None) -> RunConfig:
    """What the run records about itself; normalisation comes from the training split (kept from the first
    epoch when resuming: `saved` is the config of the checkpoint it continues); with a teacher, how many test images
    joined and a digest of the targets it taught; `val_leak`: what its --pretrained start saw of the val images."""
    train_idx, val_idx = split
    if saved is not None and saved.classes != data.classes:
        raise PipelineError(f"{config.name}: {class_difference(saved.classes, data.classes, dataset_root)}; resume it "
                            "where its competition is laid out in dataset/")
    if saved is not None:
        check_decoded_size(saved.image_size, data, dataset_root, config.name)
    if saved is not None and saved.labeled_ids and saved.labeled_ids != data.labeled_ids:
        raise PipelineError(f"{dataset_root}: its labeled images are not those {config.name} started on (images added, "
                            "removed, changed or relabeled), so the split would put trained-on images into val; "
                            "restore them, or start a new run")
    taught_split = {"pseudo_images": teaching.pseudo_images, "taught": teaching.key} if teaching else {}
    if saved is not None and saved.split.get("taught") != taught_split.get("taught"):
        raise PipelineError(f"{config.name}: its teacher's targets are not those it started with (the teacher retrained "
                            "or predicted again since); start a new run")
    leak_split = {key: value for key, value in {"val_leak": saved.split.get("val_leak") if saved else val_leak}.items()
                  if value}
    mean, std = (saved.mean, saved.std) if saved else channel_stats(data.images[train_idx])
    return RunConfig(
        options=config, classes=data.classes, mean=list(mean), std=list(std), channels=data.images.shape[3],
        image_size=list(data.images.shape[1:3]), skipped=len(data.skipped),
        split={"seed": config.seed, "val_fraction": 0.0 if config.full else config.val_fraction,
               "train_images": len(train_idx), "val_images": len(val_idx), **taught_split, **leak_split},
        labeled_ids=data.labeled_ids,
        labels_key=labels_key(dataset_root),
        started_from=saved.started_from if saved else lineage(config.pretrained),
        precision=runtime.precision, dataset=str(dataset_root), device=runtime.describe(), versions=versions(),
        created=saved.created if saved else datetime.now(timezone.utc).isoformat(timespec="seconds"))


DATA_INIT_IMAGES = 5000  # training images a model that initialises from data (fastnet's whitening) looks at


def other_model_advice(weights: Path, config: TrainConfig, channels: int) -> str:
    """Where --pretrained `weights` are a pipeline run's of another model than `config`'s, or of images of other
    channels: what to do, in words to add to the error; else nothing."""
    try:
        saved = RunConfig.of_checkpoint(load_checkpoint(weights, mmap=True), weights)
    except PipelineError:
        return ""
    theirs, kind = saved.options, {1: "greyscale", 3: "colour"}
    if (theirs.model, theirs.stem) == (config.model, config.stem):
        return "" if saved.channels == channels else (
            f"; they were trained on {kind.get(saved.channels, saved.channels)} images and these are "
            f"{kind.get(channels, channels)}, which {model_label(config.model, config.stem)} cannot adapt: start from a "
            f"run on {kind.get(channels, channels)} images, or without --pretrained")
    options = f"--model {theirs.model}" + (f" --stem {theirs.stem}" if has_stem(theirs.model) else "")
    return (f"; they are a {model_label(theirs.model, theirs.stem)} run's weights (recipe {theirs.recipe}), and this "
            f"run builds {model_label(config.model, config.stem)}: pass {options}, or --recipe {theirs.recipe}")


def run_model(config: TrainConfig, run_config: RunConfig, runtime: Runtime, console: Console,
              first_images: np.ndarray | None) -> tuple[nn.Module, list[nn.Module]]:
    """The model on its device and the norms a frozen backbone keeps. A new run (`first_images`: its first
    training images, uint8 NHWC) loads its pretrained weights, or initialises from those images where the
    model does so; a resumed run (None) gets its weights from the checkpoint."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, len(run_config.classes), config.stem, run_config.channels, config.head_dropout)
    height, width = (config.img_size,) * 2 if config.img_size else run_config.image_size
    check_input_size(model, config.model, run_config.channels, height, width,
                     "resize the images with --img-size (224 for most ImageNet models)")
    new_run = first_images is not None
    if new_run and not config.pretrained and hasattr(model, "init_from_data"):
        model.init_from_data(resize(normalised_batch(first_images, run_config.inputs, torch.device("cpu")),
                                    config.img_size))
    if config.pretrained and new_run:
        named = model_of_weights(config.pretrained) is not None
        source = weights_file(config.pretrained) if named else Path(config.pretrained)
        try:
            notes = load_pretrained(model, source, config.model)
        except PipelineError as e:
            raise PipelineError(f"{e}{other_model_advice(source, config, run_config.channels)}") from None
        console.print(f"loaded {config.pretrained}; not loaded or adapted: {', '.join(notes) or 'nothing'}")
    if config.sync_bn and runtime.ranks.distributed:
        if runtime.device.type != "cuda":
            raise PipelineError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU implementation)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    frozen_norms = freeze_backbone(model) if config.freeze_backbone else []
    return model.to(runtime.device, memory_format=runtime.memory_format), frozen_norms


TRAIN_PROBE_MIN_IMAGES = 200_000  # train images × epochs under which `auto` trains in fp32 without measuring
TRAINING_CANDIDATES = ("fp32", "bf16", "fp32 channels_last", "bf16 channels_last")  # `auto`'s on the CPU


def _training_precision(config: TrainConfig, model: nn.Module, data: TrainArrays, train_idx: np.ndarray,
                        run_config: RunConfig, runtime: Runtime, console: Console, saved: RunConfig | None) -> Runtime:
    """`--precision auto` on the CPU: the fastest of fp32 and bf16 training steps of this model, each in the
    contiguous and the channels_last layout, measured on a batch of the run's images (pipeline/precision.py;
    rank 0 measures, the others follow). A resumed run keeps the precision and layout it started in. Records
    the measurement in the run's config."""
    if config.precision != "auto" or runtime.device.type != "cpu":
        return runtime
    if saved is not None:
        return replace(runtime.in_precision(saved.precision), layout=saved.layout)
    where, choice = runtime.ranks, None
    if where.main:
        batch = train_idx[:config.batch_size]
        images = resize(normalised_batch(data.images[batch], run_config.inputs, runtime.device), config.img_size)
        targets = torch.from_numpy(data.targets[batch]).to(runtime.device)
        shape = {"model": config.model, "stem": config.stem, "channels": run_config.channels,
                 "input": config.img_size or run_config.image_size, "classes": len(run_config.classes),
                 "batch_size": config.batch_size}
        trials = {c: (lambda c=c: training_trial(model, images, targets, runtime, c)) for c in TRAINING_CANDIDATES}
        work = len(train_idx) * config.epochs
        choice = choose("training", shape, trials, work, work >= TRAIN_PROBE_MIN_IMAGES)
        console.print(choice.describe("training"))
    choice = broadcast(choice, where)
    chosen = runtime.in_candidate(choice.candidate)
    run_config.precision_probe = choice.to_dict()
    run_config.precision, run_config.layout = chosen.precision, chosen.layout
    return chosen


def setup(config: TrainConfig, run: Run, dataset_root: Path, runtime: Runtime, console: Console,
          resumed: tuple[dict, RunConfig] | None) -> TrainContext:
    """Data, split, model, optimizer, schedule and EMA of a run (when resuming, restored from the checkpoint
    of `resumed`, with its saved config); rank 0 writes the run's config and marks it running."""
    checkpoint, saved = resumed or (None, None)
    where = runtime.ranks
    console = console if where.main else Console(quiet=True)
    if saved is None and not config.full and config.metric is None:
        config.metric = read_competition(dataset_root).metric
    with rank_zero_first(where):  # rank 0 decodes the cache; the others then read it
        data = training_arrays(dataset_root, config.skip_bad, config.limit, console)
    train_idx, val_idx = run_split(data.targets, config.val_fraction, config.seed, config.full, data.classes,
                                   config.folds, config.fold)
    if config.metric in ("roc_auc", "mean_roc_auc") and len(val_idx) and len(np.unique(data.targets[val_idx])) < 2:
        raise PipelineError(f"{dataset_root}: the val split holds one class only, which {config.metric} cannot score; "
                            "use more images (raise or drop --limit) or another --metric")
    teaching = taught(config, data, (train_idx, val_idx), dataset_root, runtime, console)
    trained = pretrained_trained_on(config.pretrained, data) if checkpoint is None else np.arange(0)
    leak = pretrained_leak(config.pretrained, trained, val_idx)
    unreached = [m for m in config.milestones if m >= config.epochs]
    if unreached:
        console.print(f"[yellow]note[/yellow]: --milestones {' '.join(map(str, unreached))} at or beyond --epochs "
                      f"{config.epochs}: the learning rate never steps down there")
    if leak:
        console.print(f"[yellow]note[/yellow]: {leak}, so this run's val scores may flatter it; start from weights "
                      "that never saw them (a run of this --seed and --val-fraction), or judge it on held-out images")
    run_config = _run_config(config, data, (train_idx, val_idx), dataset_root, runtime, saved, teaching, leak)
    mean, std = tuple(run_config.mean), tuple(run_config.std)
    own_val = val_idx[where.rank::where.world]  # each rank scores its share; the metrics are reduced over all
    first_images = data.images[train_idx[:DATA_INIT_IMAGES]] if checkpoint is None else None
    model, frozen_norms = run_model(config, run_config, runtime, console, first_images)
    runtime = _training_precision(config, model, data, train_idx, run_config, runtime, console, saved)
    model = model.to(memory_format=runtime.memory_format)  # the layout the CPU measurement chose
    batches = TrainBatches(config, *((teaching.images, teaching.targets) if teaching else
                                     (data.images[train_idx], data.targets[train_idx])), len(data.classes), runtime,
                           mean, std)
    # DistributedDataParallel averages the gradients over the ranks after every backward pass; it starts from rank
    # 0's weights, so the checkpoint is restored first
    state = _training_state(config, run, run_config, runtime, model, batches.steps, checkpoint)
    replicated = DistributedDataParallel(model, device_ids=[runtime.device.index] if runtime.device.type == "cuda"
                                         else None) if where.distributed else model
    ctx = TrainContext(
        config, run, run_config, runtime, console, batches,
        val_images=torch.from_numpy(np.ascontiguousarray(data.images[own_val])).to(runtime.device) if len(val_idx) else None,
        val_targets=data.targets[own_val], val_indices=own_val, labeled=data, model=model,
        step_model=torch.compile(replicated) if config.compile else replicated, frozen_norms=frozen_norms,
        criterion=TaughtLoss(len(data.classes), config.distill_alpha if config.teacher else 0.0,
                             config.distill_temperature, config.label_smoothing) if teaching
        else nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        seen_images=seen_images(data, train_idx, config.pretrained, checkpoint), **state)
    if where.main:
        run.write_config(run_config)
        if data.skipped:
            listed = run.write_skipped(data.skipped)
            console.print(f"--skip-bad: left out {len(data.skipped)} problem file(s) or row(s), listed in {listed}")
        run.set_status("running")
    return ctx


def _training_state(config: TrainConfig, run: Run, run_config: RunConfig, runtime: Runtime, model: nn.Module,
                    steps_per_epoch: int, checkpoint: dict | None) -> dict:
    """TrainContext's optimizer, schedule, loss scaler, EMA and checkpoint saver: new, or (with `checkpoint`)
    restored with the model's weights, the epoch, the metrics so far and the RNG state."""
    optimizer, scheduler, per_step = optimizer_and_schedule(config, model, runtime.device, steps_per_epoch)
    state = dict(optimizer=optimizer, scheduler=scheduler, per_step=per_step, scaler=runtime.gradient_scaler(),
                 ema=ModelEmaV3(model, decay=config.ema, use_warmup=True) if config.ema else None,
                 saver=CheckpointSaver(run, run_config.metric, keep_top=config.keep_top))
    if checkpoint is None:
        return state
    model.load_state_dict(checkpoint["model"])
    restore_optimizer(optimizer, checkpoint["optimizer"], runtime.device)
    scheduler.load_state_dict(checkpoint["scheduler"])
    if checkpoint.get("scaler"):  # fp16 runs' (older checkpoints have none: the scale starts anew)
        state["scaler"].load_state_dict(checkpoint["scaler"])
    if state["ema"] is not None:
        state["ema"].module.load_state_dict(checkpoint["ema"])
    restore_rng(checkpoint["rng"], runtime)
    epoch, history = checkpoint["epoch"], checkpoint.get("history")
    if history is None:  # checkpoints before they kept the whole log
        history = run.read_history(epoch)
        if checkpoint.get("metrics") and (not history or history[-1]["epoch"] < epoch):  # killed before the log was written
            history.append(checkpoint["metrics"])
    return {**state, "start_epoch": epoch, "epoch": epoch, "history": history,
            "saver": CheckpointSaver(run, run_config.metric, checkpoint["best_score"], checkpoint["best_epoch"],
                                     config.keep_top, checkpoint.get("top"))}


LOOKAHEAD_STEPS = 5  # airbench94's: the slow weights are updated every 5 steps


def lookahead_alpha(step: int, total: int) -> float:
    """How far the slow weights move toward the fast ones at `step` of `total` (then the fast ones restart from
    them): airbench94's 1 - 0.95⁵·(step/total)³, from 1 (no pull) at the start to 0.23 at the end."""
    return 1 - 0.95**5 * (step / total) ** 3


def lookahead_step(optimizer: torch.optim.Optimizer, step: int, total: int) -> None:
    """Before optimizer step `step` (1 … total): the alpha its lookahead update applies (every LOOKAHEAD_STEPS)."""
    for group in optimizer.param_groups:
        group["lookahead_alpha"] = lookahead_alpha(step, total)


def lookahead_finish(optimizer: torch.optim.Optimizer) -> None:
    """After the last step: the weights become the slow weights (alpha 0: the slow ones stay, the fast copy them)."""
    for group in optimizer.param_groups:
        group["lookahead_alpha"] = 0.0
    optimizer.sync_lookahead()


def restore_optimizer(optimizer: torch.optim.Optimizer, state: dict, device: torch.device) -> None:
    """Load a saved optimizer state for this run's device: the saved param groups carry the saving device's
    `fused` flag, and its buffers the saving device's memory layout (channels_last on CUDA); both are made
    this device's, as a new optimizer would have them."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        group["fused"] = device.type == "cuda" or None
    for param, buffers in getattr(optimizer, "_base_optimizer", optimizer).state.items():  # timm's Lookahead wraps
        for key, value in buffers.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                buffers[key] = torch.empty_like(param).copy_(value)


def all_rng_states(runtime: Runtime) -> list[dict]:
    """Every rank's RNG state (CPU, and its own GPU's), in rank order: a collective, every rank calls it."""
    device = runtime.device
    own = {"cpu": torch.get_rng_state(),
           "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
    return all_objects(own, runtime.ranks)


def restore_rng(saved: list[dict] | dict, runtime: Runtime) -> None:
    """This rank's RNG state from `all_rng_states`' list. A rank the saved run did not have keeps its seeded
    state. (Checkpoints of earlier versions hold {"torch": CPU state, "cuda": one state per visible GPU}.)"""
    if isinstance(saved, dict):
        cuda = saved.get("cuda") or []
        index = runtime.device.index or 0
        saved = [{"cpu": saved["torch"], "cuda": cuda[index] if index < len(cuda) else None}]
    rank = runtime.ranks.rank
    if rank >= len(saved):
        return
    torch.set_rng_state(saved[rank]["cpu"])
    if runtime.device.type == "cuda" and saved[rank]["cuda"] is not None:
        torch.cuda.set_rng_state(saved[rank]["cuda"], runtime.device)


def _checkpoint_state(ctx: TrainContext, rng: list[dict], evaluation: Evaluation | None) -> dict:
    """The checkpoint dict, less what the saver adds (epoch, best_score, best_epoch, top)."""
    state = {"model": ctx.model.state_dict(), "optimizer": ctx.optimizer.state_dict(),
             "scheduler": ctx.scheduler.state_dict(), "scaler": ctx.scaler.state_dict(),
             "config": ctx.run_config.to_dict(), "rng": rng, "metrics": ctx.history[-1],
             "history": list(ctx.history), "seen_images": ctx.seen_images}
    if ctx.ema is not None:
        state["ema"] = ctx.ema.module.state_dict()
    if evaluation is not None:
        state["val_digest"] = val_digest(evaluation.predictions)
    return state


def val_digest(predictions: ValPredictions) -> str:
    """The digest of val predictions as `Run.write_val_probabilities` saves them."""
    return predictions_digest(predictions.indices, predictions.actual, predictions.probabilities)


def fit(ctx: TrainContext) -> TrainResult:
    """The epoch loop: train, evaluate, log, save; then the end-of-run checks and report."""
    config = ctx.config
    ctx.console.print(
        f"run {ctx.run.path}: {config.recipe} recipe, {model_label(config.model, config.stem)} on {ctx.runtime.device} "
        f"({ctx.runtime.candidate}), {ctx.run_config.split['train_images']} train / "
        f"{ctx.run_config.split['val_images']} val images, {len(ctx.run_config.classes)} classes, "
        + (f"epochs {ctx.start_epoch + 1}-{config.epochs}" if ctx.start_epoch < config.epochs else
           f"all {config.epochs} epoch(s) trained: finishing its report"))
    with _recorded_status(ctx):  # the run is finished once its report is drawn
        with _EpochLog(ctx) as log:
            best_predictions = _epochs(ctx, log)
        ctx.finishing = True
        return _finish(ctx, best_predictions)


def _epochs(ctx: TrainContext, log: _EpochLog) -> ValPredictions | None:
    """Train the epochs left; returns the best epoch's val predictions when it is one of them."""
    config, where, best_predictions = ctx.config, ctx.runtime.ranks, None
    for epoch in range(ctx.start_epoch + 1, config.epochs + 1):
        ctx.epoch = epoch
        lr = ctx.optimizer.param_groups[0]["lr"]
        started = time.perf_counter()
        train_loss, train_acc = train_one_epoch(ctx)
        train_seconds = time.perf_counter() - started
        evaluation = evaluate(ctx) if ctx.val_images is not None else None
        if not ctx.per_step:
            _step_schedule(ctx)
        if not math.isfinite(weights_checksum(ctx.model)):  # the epoch's last steps, which no loss has seen
            raise diverged(ctx, "the weights became non-finite")
        reached = log.epoch(lr, (train_loss, train_acc), evaluation, time.perf_counter() - started, train_seconds)
        rng = all_rng_states(ctx.runtime)  # collective: every rank, every epoch
        score = ctx.history[-1]["val_score"] if evaluation else None  # as logged: what reports rank
        _, best_epoch = ctx.saver.save(_checkpoint_state(ctx, rng, evaluation) if where.main else {}, epoch,
                                       score, write=where.main)
        log.write()  # the metrics log and result name an epoch only once its checkpoint is written
        if evaluation is not None and best_epoch == epoch:
            best_predictions = evaluation.predictions
        if reached or _out_of_patience(ctx, best_epoch):
            break
    return best_predictions


def _step_schedule(ctx: TrainContext) -> None:
    """One scheduler step. In fp16 the gradient scaler skips the first optimizer steps while it finds its scale,
    and torch would warn that the schedule stepped before the optimizer did: that is the scaler working as meant."""
    if not ctx.scaler.is_enabled():
        ctx.scheduler.step()
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
        ctx.scheduler.step()


def _out_of_patience(ctx: TrainContext, best_epoch: int) -> bool:
    """--patience: whether that many epochs have passed without a better val score (said when so)."""
    patience = ctx.config.patience
    if patience is None or ctx.val_images is None or ctx.epoch - best_epoch < patience or ctx.epoch == ctx.config.epochs:
        return False
    ctx.console.print(f"early stop after epoch {ctx.epoch}: no better val {METRIC_LABELS[ctx.run_config.metric]} for "
                      f"{patience} epoch{'s' * (patience > 1)} (best {ctx.saver.best_score:.4f} at epoch {best_epoch})")
    return True


def _average_top(ctx: TrainContext) -> tuple[Evaluation, str]:
    """--average-top: best.pt becomes the best epoch's checkpoint with the weights (and EMA) averaged over the
    kept top epochs; scored on val. Returns the score and a line that sets it beside the best single epoch."""
    checkpoints = ctx.saver.top_checkpoints()
    epochs = [epoch for _, epoch in ctx.saver.top]
    averaged = dict(checkpoints[0])
    for key in ("model", "ema"):
        if averaged.get(key) is not None:
            averaged[key] = {name: torch.stack([c[key][name] for c in checkpoints]).mean(0) if tensor.is_floating_point()
                             else tensor for name, tensor in averaged[key].items()}  # counters: the best epoch's
    ctx.eval_model.load_state_dict(inference_weights(averaged))
    evaluation = evaluate(ctx)
    if ctx.runtime.ranks.main:
        ctx.saver.replace_best({**averaged, "averaged_epochs": epochs, "averaged_score": evaluation.score,
                                "val_digest": val_digest(evaluation.predictions)})
    line = (f"best.pt: the average of the {len(epochs)} best epochs ({', '.join(map(str, epochs))}): val "
            f"{METRIC_LABELS[ctx.run_config.metric]} {evaluation.score:.4f}; the best single epoch "
            f"({ctx.saver.best_epoch}): {ctx.saver.best_score:.4f}")
    ctx.console.print(line)
    return evaluation, line


def _finish(ctx: TrainContext, best_predictions: ValPredictions | None) -> TrainResult:
    """Check the replicas agree, mark the run finished and draw its report (from the best epoch's val
    predictions; a resumed run whose best epoch came earlier scores its best checkpoint again; with
    --average-top, from the averaged weights')."""
    where, run, console = ctx.runtime.ranks, ctx.run, ctx.console
    checksum = weights_checksum(ctx.model)
    if not same_on_all_ranks(checksum, ctx.runtime.device, where):
        raise PipelineError(f"{run.path}: the {where.world} processes ended with different weights; not trusting this run")
    best_score, best_epoch, averaged_score = ctx.saver.best_score, ctx.saver.best_epoch, None
    if ctx.config.average_top:
        averaged, line = _average_top(ctx)
        best_predictions, averaged_score = averaged.predictions, averaged.score  # the report shows what best.pt predicts
        if where.main:
            run.write_result(line + "\n" + _result_text(ctx))  # what best.pt holds first
    elif ctx.val_images is not None and best_predictions is None:
        best = load_checkpoint(run.best)
        ctx.eval_model.load_state_dict(inference_weights(best))
        best_predictions = evaluate(ctx).predictions
        if where.main and best.get("val_digest") != val_digest(best_predictions):  # scored again here: these now
            ctx.saver.replace_best({**best, "val_digest": val_digest(best_predictions)})
    if where.main:
        _log_hparams(run, ctx.config, ctx.history)
        if best_predictions is not None:  # out-of-fold predictions, for cross-validation and blending
            run.write_val_probabilities(best_predictions.indices, best_predictions.actual, best_predictions.probabilities)
        written = draw_report(run, best_predictions, ctx.labeled, explainer(run.best, ctx.runtime.device))
        run.mark_finished()
        console.print(f"report: {', '.join(str(path) for path in written)}")
    return TrainResult(run.path, ctx.run_config.metric, None if ctx.val_images is None else best_score, best_epoch,
                       checksum, averaged_score)


@contextlib.contextmanager
def _recorded_status(ctx: TrainContext):
    """Mark the run interrupted (Ctrl-C: a one-line error saying how to resume) or failed when the loop stops. A
    Ctrl-C that a library turns into an error of its own (matplotlib's renderer: "Invalid bounding box") is still
    an interruption: the signal is noted as it arrives."""
    main, signals = ctx.runtime.ranks.main, []
    noted = _note_interrupts(signals)
    try:
        yield
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt) or signals:
            if main:
                ctx.run.set_status("interrupted")
            if not ctx.run.last.exists():
                raise Interrupted("interrupted before the first epoch finished; nothing was kept") from None
            where = f"after epoch {ctx.epoch}, while its report was drawn" if ctx.finishing else \
                f"during epoch {ctx.epoch}"
            raise Interrupted(f"interrupted {where}; continue with `pipeline train --resume {ctx.run.path}`") from None
        if main:
            with contextlib.suppress(PipelineError):  # a full disk: the error that stopped the run is the one to see
                ctx.run.set_status("failed", error=str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise
    finally:
        if noted:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _note_interrupts(signals: list) -> bool:
    """Where Ctrl-C raises KeyboardInterrupt (Python's own handler, in the main thread), also append to `signals` when
    it arrives; returns whether that handler was put in place."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return False  # ignored (a job started without job control) or someone else's

    def noted(signum, frame):
        signals.append(signum)
        signal.default_int_handler(signum, frame)

    try:
        signal.signal(signal.SIGINT, noted)
    except ValueError:  # not the main thread
        return False
    return True


class _EpochLog:
    """Each epoch's metrics row: kept in the context and printed (`epoch`), then, once the epoch's checkpoint is
    saved, written (rank 0) to the metrics log, TensorBoard and the result line (`write`)."""

    def __init__(self, ctx: TrainContext):
        self.ctx = ctx
        self.wall = ctx.history[-1]["wall_s"] if ctx.history else 0.0
        self.writer = None

    def __enter__(self) -> _EpochLog:
        if self.ctx.runtime.ranks.main:
            self.writer = SummaryWriter(self.ctx.run.tensorboard,
                                        purge_step=self.ctx.start_epoch + 1 if self.ctx.start_epoch else None)
        return self

    def __exit__(self, *exc) -> None:
        if self.writer is not None:
            self.writer.close()

    def epoch(self, lr: float, train: tuple[float, float], evaluation: Evaluation | None, seconds: float,
              train_seconds: float) -> bool:
        """Record one epoch; returns whether it reached --target-acc."""
        ctx, epoch = self.ctx, self.ctx.epoch
        self.wall += seconds
        val = (evaluation.loss, evaluation.acc, evaluation.f1, evaluation.score) if evaluation else (float("nan"),) * 4
        row = {"epoch": epoch, **{k: round(v, 6) for k, v in zip(
                   ("train_loss", "train_acc", "val_loss", "val_acc", "val_f1", "val_score", "lr"), (*train, *val, lr))},
               "seconds": round(seconds, 3), "wall_s": round(self.wall, 3),
               "images_per_s": round(ctx.run_config.split["train_images"] / train_seconds, 1)}
        ctx.history.append(row)
        target = ctx.config.target_acc
        reached = target is not None and val[1] >= target
        metric = ctx.run_config.metric
        shown = f"{METRIC_LABELS[metric]} {val[3]:.4f} " if metric not in ("accuracy", "f1_macro") else ""
        ctx.console.print(
            f"epoch {epoch}/{ctx.config.epochs}  train loss {train[0]:.4f} acc {train[1]:.4f}  "
            + (f"val loss {val[0]:.4f} acc {val[1]:.4f} F1 {val[2]:.4f} {shown} " if evaluation else "")
            + f"lr {lr:.4g}  {seconds:.1f}s {row['images_per_s']:.0f} img/s")
        if reached:
            ctx.console.print(f"reached val accuracy {val[1]:.4f} ≥ {target} at epoch {epoch} after {self.wall:.1f}s")
        return reached

    def write(self) -> None:
        """The last epoch's row to TensorBoard, the metrics log and the result line (rank 0)."""
        if self.writer is None:
            return
        row, metric = self.ctx.history[-1], self.ctx.run_config.metric
        for tag, key in (("loss/train", "train_loss"), ("loss/val", "val_loss"), ("accuracy/train", "train_acc"),
                         ("accuracy/val", "val_acc"), ("f1/val", "val_f1"),
                         *([(f"{metric}/val", "val_score")] if metric != "accuracy" else []),
                         ("lr", "lr"), ("images_per_s", "images_per_s")):
            if not np.isnan(row[key]):
                self.writer.add_scalar(tag, row[key], row["epoch"])
        self.writer.flush()
        self.ctx.run.write_metrics(self.ctx.history)
        self.ctx.run.write_result(_result_text(self.ctx))


def _result_text(ctx: TrainContext) -> str:
    last, summary = ctx.history[-1], summarize_metrics(pd.DataFrame(ctx.history), ctx.run_config.metric)
    reached = ctx.config.target_acc is not None and last["val_acc"] >= ctx.config.target_acc
    if ctx.config.full:
        return (f"trained on all labeled images for {last['epoch']} epochs (no validation); "
                f"{ctx.run.best.name} is the last epoch\n")
    accuracy = f", val accuracy {summary.val_acc:.4f}" if summary.metric != "accuracy" else ""
    text = (f"best val {METRIC_LABELS[summary.metric]} {summary.best_score:.4f} at epoch {summary.best_epoch}{accuracy} "
            f"(of {last['epoch']} trained, {last['wall_s']:.1f}s)\n")
    if reached:
        text += f"time to val accuracy {ctx.config.target_acc}: {last['wall_s']:.1f}s (epoch {last['epoch']})\n"
    return text


def train_one_epoch(ctx: TrainContext) -> tuple[float, float]:
    """One epoch of optimizer steps; returns the mean loss and accuracy over the images of all ranks."""
    model, device, optimizer = ctx.step_model, ctx.runtime.device, ctx.optimizer
    model.train()
    for norm in ctx.frozen_norms:  # a frozen backbone keeps its normalisation statistics too
        norm.eval()
    batches = ctx.batches.epoch(ctx.epoch)
    first_step, total_steps = (ctx.epoch - 1) * ctx.batches.steps, ctx.config.epochs * ctx.batches.steps
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = shown = 0
    title = f"epoch {ctx.epoch}/{ctx.config.epochs}"
    with progress_bar(ctx.console, title, len(batches), loss=0.0, acc=0.0) as advance:
        for step, (images, targets) in enumerate(batches, 1):
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            if ctx.config.lookahead:
                lookahead_step(optimizer, first_step + step, total_steps)
            logits, loss = training_step(model, images, targets, ctx.criterion, optimizer, ctx.scaler, ctx.runtime,
                                         ctx.config.clip_grad)
            if ctx.config.lookahead and first_step + step == total_steps:
                lookahead_finish(optimizer)
            if ctx.per_step:
                _step_schedule(ctx)
            if ctx.ema is not None:
                ctx.ema.update(unwrap_model(model), step=first_step + step)
            loss_sum += loss.detach() * len(targets)
            # with mixup/cutmix or a teacher a target row starts with class probabilities: accuracy counts the larger
            correct += (logits.argmax(1) == (targets[:, :logits.shape[1]].argmax(1) if targets.ndim == 2 else targets)).sum()
            seen += len(targets)
            if step % 10 == 0 or step == len(batches):  # .item() waits for the device: not every step
                so_far = loss_sum.item()
                if not math.isfinite(so_far) and not ctx.runtime.ranks.distributed:  # ranks stop together below
                    raise diverged(ctx, f"the training loss became {so_far} at step {step}")
                advance(step - shown, loss=so_far / seen, acc=correct.item() / seen)
                shown = step
    total_loss, total_correct, total_seen = all_sum([loss_sum.item(), correct.item(), seen], device, ctx.runtime.ranks)
    if not math.isfinite(total_loss):
        raise diverged(ctx, f"the training loss became {total_loss}")
    return total_loss / total_seen, total_correct / total_seen


def training_step(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, criterion: nn.Module,
                  optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, runtime: Runtime,
                  clip_grad: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch in the runtime's precision, its gradients' norm clipped to `clip_grad` when
    given; returns the logits and the loss."""
    with runtime.autocast():
        logits = model(images)
        loss = criterion(logits, targets)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_grad is not None:
        scaler.unscale_(optimizer)  # fp16: the true gradients are clipped (an overflow still skips the step)
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    scaler.step(optimizer)  # fp16: skipped when the gradients overflowed, and the scale lowered
    scaler.update()
    return logits, loss


def diverged(ctx: TrainContext, what: str) -> PipelineError:
    """The error that stops a run whose loss is no longer finite, before its epoch is saved: the checkpoints
    keep the last finite epoch."""
    kept = (f"{ctx.run.last.name} keeps epoch {ctx.epoch - 1}, {ctx.run.best.name} epoch {ctx.saver.best_epoch}"
            if ctx.epoch > 1 else "nothing was kept")
    return PipelineError(f"{ctx.run.path}: {what} in epoch {ctx.epoch}: training diverged; {kept}. Start a new run "
                         f"with a lower --lr (this one: {ctx.config.lr:g}); if a much lower one diverges too, the data "
                         f"may be degenerate (images of one flat colour leave {ctx.config.model}'s normalisation "
                         "nothing to scale): look at them, or try --precision fp32 or another --model")


def evaluate(ctx: TrainContext) -> Evaluation:
    """Mean cross-entropy, accuracy, macro-F1, the run's metric and the predictions of the evaluated model (the EMA
    when kept) on the val split: each rank scores its share through `infer`, the results are put together."""
    where, device = ctx.runtime.ranks, ctx.runtime.device
    broadcast_buffers(ctx.eval_model, where)  # collective: every rank evaluates rank 0's statistics
    log_probs = infer(ctx.eval_model, ctx.val_images, ctx.run_config.inputs, ctx.config.val_tta, ctx.runtime,
                      default_batch_size(device), num_classes=len(ctx.run_config.classes))
    (loss_sum,) = all_sum([float(-log_probs[np.arange(len(log_probs)), ctx.val_targets].sum())], device, where)
    predicted, actual = all_concat(log_probs.argmax(1), where), all_concat(ctx.val_targets, where)
    labels = list(range(len(ctx.run_config.classes)))
    f1 = f1_score(actual, predicted, average="macro", labels=labels, zero_division=0)
    if not math.isfinite(loss_sum):
        raise diverged(ctx, f"the val loss became {loss_sum}")
    probabilities = np.exp(all_concat(log_probs, where)).astype(np.float32)
    return Evaluation(loss_sum / len(actual), float((predicted == actual).mean()), float(f1),
                      metric_score(ctx.run_config.metric, actual, probabilities),
                      ValPredictions(ctx.run_config.classes, actual, predicted, probabilities,
                                     all_concat(ctx.val_indices, where)))


def _log_hparams(run: Run, config: TrainConfig, history: list[dict]) -> None:
    """The run's options with its final metrics, for TensorBoard's HPARAMS tab across runs."""
    options = {key: value if isinstance(value, (int, float, str, bool)) else str(value)
               for key, value in asdict(config).items()
               if OPTION[key].hparam}
    summary = summarize_metrics(pd.DataFrame(history), config.metric or "accuracy")
    metrics = {"hparam/wall_s": summary.wall_s, "hparam/epochs_trained": summary.epochs}
    if summary.best_score is not None:
        metrics.update({"hparam/best_val_score": summary.best_score, "hparam/val_acc_at_best": summary.val_acc,
                        "hparam/val_f1_at_best": summary.val_f1})
    with SummaryWriter(run.tensorboard) as writer:
        for summary_proto in hparams(options, metrics):
            writer.file_writer.add_summary(summary_proto)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value)
