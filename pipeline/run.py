"""The run folder `weights/<run>/`: the name, format, reading and writing of every file in it.

    config.json    RunConfig: the options, classes, normalisation, split, device, versions
    metrics.csv    one row per epoch (METRIC_COLUMNS)
    status.json    running (with pid and host) / finished / interrupted / failed
    best.pt        checkpoint of the best val epoch (the last epoch for --full runs)
    last.pt        checkpoint of the last epoch; `--resume` continues from it
    top/epoch-N.pt checkpoints of the --keep-top best val epochs (only with --keep-top 2 or more)
    result.txt     the outcome in a line or two
    skipped.txt    problem files left out by --skip-bad
    tb/            TensorBoard events
    curves.png, confusion.png, per_class.csv, report.md   the report (pipeline/figures.py draws it)

A checkpoint is one dict: model, optimizer, scheduler, scaler, epoch, best_score (of the run's metric; checkpoints
before --metric have best_acc), best_epoch, top (the kept best epochs), rng, config (the RunConfig as a dict), metrics (its epoch's metrics row),
history (the rows of every epoch up to it, since 0.3.1), seen_images (a digest of each image its weights trained on,
its --pretrained start's included: teach.seen_images) and,
with an EMA, ema; an --average-top best.pt also averaged_epochs and averaged_score. No other module names any of
these files.
A checkpoint of an epoch that was validated also holds val_digest: the digest of its val predictions.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.competition import strict_csv
from pipeline.config import (FOLDS_RANGE, OPTION, OPTIONS_FORMAT, RESUME_OVERRIDES, checked_options, TrainConfig,
                             saved_config, upgraded_options)
from pipeline.errors import PipelineError
from pipeline.metrics import HIGHER_IS_BETTER, better, scores
from pipeline.workspace import atomic_path, link_atomic, read_json, weights_dir, write_failure, write_text_atomic

BEST, LAST, CONFIG = "best.pt", "last.pt", "config.json"
METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_f1", "val_score", "lr", "seconds",
                  "wall_s", "images_per_s")  # val_f1: macro-F1; val_score: of the run's metric (config: options.metric)
REQUIRED_METRICS = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"}  # older runs lack the rest
STATES = ("running", "finished", "interrupted", "failed")


@dataclass(frozen=True)
class ModelInputs:
    """How images become a model's input: per-channel normalisation, then an optional resize."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    img_size: int | None = None


RECORDED_FIELDS = ("classes", "mean", "std", "channels", "image_size", "labeled_ids", "split")  # fixed when a run
# starts: config.json and every checkpoint agree on them
SPLIT_KEYS = ("labeled_ids", "seed", "val_fraction", "full", "folds", "fold")  # what says which images a run trained on


@dataclass
class RunConfig:
    """`config.json`, also saved inside every checkpoint as `config`."""

    options: TrainConfig
    classes: list[str]
    mean: list[float] = field(default_factory=list)  # of the training split, per channel
    std: list[float] = field(default_factory=list)
    channels: int = 3
    image_size: list[int] = field(default_factory=list)
    skipped: int = 0
    split: dict = field(default_factory=dict)  # seed, val_fraction, train_images, val_images
    labeled_ids: str = ""  # digest of the ids, labels and pixels the run trains on (dataset.training_digest)
    labels_key: str = ""  # digest of the dataset's every labeled id and label (layout.labels_key): predict checks it
    started_from: list | None = None  # the splits (`split_identity`) of the pipeline checkpoints its --pretrained
    # weights descend from, nearest first ([]: none; None: not recorded, runs before it)
    precision: str = "fp32"  # of training: bf16, fp16 or fp32
    layout: str | None = None  # of training's tensors: contiguous or channels_last (None: the device's default)
    precision_probe: dict = field(default_factory=dict)  # what `--precision auto` measured (pipeline/precision.py)
    dataset: str = ""
    device: str = ""
    versions: dict = field(default_factory=dict)
    created: str = ""  # when the run started (UTC, ISO 8601)
    format: int = OPTIONS_FORMAT  # what its options mean (config.OPTIONS_FORMAT); files without it: 1

    @property
    def metric(self) -> str:
        """What ranks the run's epochs: runs from before --metric ranked them by accuracy."""
        return self.options.metric or "accuracy"

    @property
    def inputs(self) -> ModelInputs:
        if not self.mean or not self.std:
            raise PipelineError(f"run {self.options.name}: its config has no normalisation (mean/std); train it again")
        return ModelInputs(tuple(self.mean), tuple(self.std), self.options.img_size)

    def to_dict(self) -> dict:
        return {**asdict(self), "options": asdict(self.options)}

    def split_identity(self) -> dict:
        """Which labeled images a model of this config trained on: its labeled set and split (SPLIT_KEYS)."""
        return {"labeled_ids": self.labeled_ids, **{key: getattr(self.options, key) for key in SPLIT_KEYS[1:]}}

    @classmethod
    def from_dict(cls, saved: object, source: object) -> RunConfig:
        """A saved config; keys added since it was written take their defaults."""
        if not isinstance(saved, dict) or not {"options", "classes"} <= saved.keys():
            raise PipelineError(f"{source}: not a pipeline run config (no options/classes)")
        if not isinstance(saved["options"], dict) or not isinstance(saved["classes"], list):
            raise PipelineError(f"{source}: not a pipeline run config (options must be an object, classes a list)")
        # unknown keys are left out, null values take the defaults
        known = {k: v for k, v in saved.items()
                 if k in cls.__dataclass_fields__ and k not in ("options", "format") and v is not None}
        options = upgraded_options(saved["options"], saved.get("format", 1), source)
        config = cls(options=saved_config(options, source), **known)
        config.check(source)
        return config

    def check(self, source: object) -> None:
        """The values inference relies on have the types and lengths it needs (a hand-edited file may not)."""
        def numbers(values) -> bool:
            return isinstance(values, list) and all(isinstance(v, (int, float)) for v in values)
        problems = [what for what, fine in (
            ("classes must be names", all(isinstance(c, str) for c in self.classes)),
            ("channels must be 1 or 3", self.channels in (1, 3)),
            ("mean and std must be numbers, one per channel", numbers(self.mean) and numbers(self.std) and (
                not self.mean or len(self.mean) == len(self.std) == self.channels)),
            ("image_size must be [height, width]", numbers(self.image_size) and len(self.image_size) in (0, 2)),
            ("started_from must be a list of splits", self.started_from is None or (
                isinstance(self.started_from, list) and all(isinstance(split, dict) and set(SPLIT_KEYS) <= split.keys()
                                                            for split in self.started_from))),
            ("options.img_size must be a whole number", self.options.img_size is None
             or isinstance(self.options.img_size, int)),
        ) if not fine]
        if problems:
            raise PipelineError(f"{source}: not a usable pipeline run config ({'; '.join(problems)})")

    @classmethod
    def of_checkpoint(cls, checkpoint: dict, source: object) -> RunConfig:
        return cls.from_dict(checkpoint["config"], source)


@dataclass(frozen=True)
class MetricsSummary:
    """What a run's metrics say at a glance (None where the run has no such figure): the best epoch by `metric`,
    and its val figures."""

    epochs: int
    metric: str
    best_score: float | None
    best_epoch: int | None
    val_acc: float | None
    val_f1: float | None  # macro-F1
    val_loss: float | None
    wall_s: float | None
    images_per_s: float | None


def summarize_metrics(metrics: pd.DataFrame, metric: str = "accuracy") -> MetricsSummary:
    """The summary of a metrics log whose epochs `metric` ranks (the first of equals wins, as for best.pt)."""
    if "val_score" not in metrics:  # a log from before --metric: accuracy ranked its epochs
        metric = "accuracy"
    ranked = metrics["val_acc"] if metric == "accuracy" else metrics["val_score"]
    best = None
    if ranked.notna().any():
        best = metrics.loc[ranked.idxmax() if HIGHER_IS_BETTER[metric] else ranked.idxmin()]
    wall = (metrics["wall_s"].iloc[-1] if "wall_s" in metrics
            else metrics["seconds"].sum() if "seconds" in metrics else None)
    return MetricsSummary(
        epochs=int(metrics["epoch"].max()), metric=metric,
        best_score=None if best is None else float(ranked[best.name]),
        best_epoch=None if best is None else int(best["epoch"]),
        val_acc=None if best is None else float(best["val_acc"]),
        val_f1=None if best is None or "val_f1" not in metrics else float(best["val_f1"]),
        val_loss=None if best is None else float(best["val_loss"]),
        wall_s=None if wall is None else float(wall),
        images_per_s=float(metrics["images_per_s"].median()) if "images_per_s" in metrics else None)


class Run:
    """One run folder."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.name = self.path.name
        self.best, self.last = self.path / BEST, self.path / LAST
        self.tensorboard = self.path / "tb"
        self.curves, self.confusion = self.path / "curves.png", self.path / "confusion.png"
        self.per_class, self.report = self.path / "per_class.csv", self.path / "report.md"
        self.confused_pairs, self.top_losses = self.path / "confused_pairs.csv", self.path / "top_losses.png"
        self.label_issues, self.label_issue_images = self.path / "label_issues.csv", self.path / "label_issues.png"
        self.error_cams = self.path / "error_cams.png"
        self.report_files = (self.curves, self.confusion, self.per_class, self.confused_pairs, self.top_losses,
                             self.report)
        self.onnx = self.path / "model.onnx"  # `pipeline export`'s (export.py), of best.pt: deleted when that changes
        self.top = self.path / "top"
        # read and written only through the methods below
        self._config, self._metrics = self.path / CONFIG, self.path / "metrics.csv"
        self._status = self.path / "status.json"
        self._val_probabilities = self.path / "val_probabilities.npz"

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def status_file(self) -> Path:
        """status.json, for messages that name it (read and written only through the methods below)."""
        return self._status

    def looks_like_run(self) -> bool:
        return self.path.is_dir() and any(p.exists() for p in (self._config, self._metrics, self._status, self.last))

    def read_config(self) -> RunConfig:
        if not self._config.is_file():
            raise PipelineError(f"{self._config}: not found (not a run folder)")
        try:
            saved = read_json(self._config)
        except ValueError as e:  # not JSON, not UTF-8, a key given twice
            raise PipelineError(f"{self._config}: not valid JSON ({e}); restore it from a copy, or delete {self.path} "
                                "and train it again") from None
        return RunConfig.from_dict(saved, self._config)

    def checked_config(self) -> RunConfig:
        """config.json, whose options (but those --resume may change), classes, normalisation and split must be those
        its last checkpoint records."""
        config = self.read_config()
        if not self.last.is_file():
            return config
        saved = RunConfig.of_checkpoint(load_checkpoint(self.last, mmap=True), self.last)
        differ = differing_options(config.options, saved.options)
        if differ:
            key = differ[0]
            raise PipelineError(f"{self._config}: says --{key.replace('_', '-')} {getattr(config.options, key)}, "
                                f"but {self.last.name} was trained with {getattr(saved.options, key)} (config.json "
                                f"edited by hand, or {self.last.name} another run's?); restore the one that changed")
        fields = [name for name in RECORDED_FIELDS if getattr(config, name) != getattr(saved, name)]
        if fields:
            raise PipelineError(f"{self._config}: its {fields[0]} differ from those {self.last.name} was trained with "
                                f"({getattr(saved, fields[0])!s:.80}; edited by hand?); restore it")
        return config

    def has_config(self) -> bool:
        return self._config.is_file()

    def write_config(self, config: RunConfig) -> None:
        write_text_atomic(self._config, json.dumps(config.to_dict(), indent=2) + "\n")

    def has_metrics(self) -> bool:
        return self._metrics.exists()

    def read_metrics(self) -> pd.DataFrame:
        if not self.has_metrics():
            raise PipelineError(f"{self._metrics}: no metrics (the run has not finished an epoch)")
        fix = "restore it from a copy (its checkpoints still predict as they are)"
        if not self._metrics.is_file():
            raise PipelineError(f"{self._metrics}: not a regular file, so no metrics can be read; {fix}")
        try:
            metrics = strict_csv(self._metrics, whole_rows=True)
        except PipelineError as e:
            raise PipelineError(f"{self._metrics}: not a metrics CSV ({str(e).split(': ', 1)[1]}); {fix}") from None
        missing = REQUIRED_METRICS - set(metrics.columns)
        if missing or metrics.empty:
            raise PipelineError(f"{self._metrics}: "
                                + (f"missing columns {', '.join(sorted(missing))}" if missing else "no epochs") + f"; {fix}")
        numeric = [c for c in METRIC_COLUMNS if c in metrics]
        try:
            metrics[numeric] = metrics[numeric].apply(pd.to_numeric)
        except (ValueError, TypeError) as e:
            raise PipelineError(f"{self._metrics}: not numbers ({e}); {fix}") from None
        if metrics[numeric].isin([float("inf"), float("-inf")]).any().any():
            raise PipelineError(f"{self._metrics}: holds infinite values; not a metrics log the pipeline wrote; {fix}")
        return metrics

    def read_history(self, until_epoch: int) -> list[dict]:
        """The metrics rows of epochs 1…until_epoch (what a resumed run continues from)."""
        if not self._metrics.is_file():
            return []
        return strict_csv(self._metrics).query("epoch <= @until_epoch").to_dict("records")

    def write_metrics(self, rows: list[dict]) -> None:
        with atomic_path(self._metrics) as tmp:
            pd.DataFrame(rows, columns=list(METRIC_COLUMNS)).to_csv(tmp, index=False)

    def read_status(self) -> dict | None:
        """The saved status; a `finished` that does not name the last checkpoint it finished with (written since
        DIGEST_SINCE) reads as failed."""
        try:
            status = json.loads(self._status.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(status, dict) or status.get("state") not in STATES:
            return None
        if status["state"] == "finished" and status.get("last") != self._last_key():
            return {**status, "state": "failed", "error": f"{self._status.name} says finished, but {self.last.name} is "
                                                          "not the checkpoint the run finished with (edited?)"}
        return status

    def _last_key(self) -> str | None:
        """The key a finished status must name: last.pt's, for runs written since digests (else None: not kept)."""
        try:
            info = self.last.stat()
        except OSError:
            return None
        return _finished_key(str(self.last), info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)

    def mark_finished(self) -> None:
        """Status finished, naming the last checkpoint it finished with (read now, never remembered)."""
        self.set_status("finished", last=_finished_key.__wrapped__(str(self.last)) if self.last.is_file() else None)

    def training_pid(self) -> int | None:
        """The process training this run on this machine now, if one is (status running, its process alive)."""
        status = self.read_status() or {}
        if status.get("state") != "running" or status.get("host") != socket.gethostname():
            return None
        return status["pid"] if status_process_alive(status) else None

    def set_status(self, state: str, **details) -> None:
        """running (with the process, so `pipeline runs` can tell a crash), finished, interrupted, failed."""
        status = {"state": state, "pid": os.getpid(), "host": socket.gethostname(),
                  "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"), **details}
        write_text_atomic(self._status, json.dumps(status) + "\n")

    def write_result(self, text: str) -> None:
        write_text_atomic(self.path / "result.txt", text)

    def write_skipped(self, problems: list[str]) -> Path:
        path = self.path / "skipped.txt"
        write_text_atomic(path, "\n".join(problems) + "\n")
        return path

    def write_val_probabilities(self, indices: np.ndarray, targets: np.ndarray, probabilities: np.ndarray) -> None:
        """The best checkpoint's class probabilities for its val images (their indices in the labeled set, their
        classes), with the checkpoint's key."""
        write_predictions(self._val_probabilities, indices, targets, probabilities, checkpoint_key(self.best))

    def read_val_probabilities(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The val probabilities of this run's best.pt as it is now: those whose digest best.pt records (before it
        recorded one: of its key, or taken as they are when the file has none)."""
        status = (self.read_status() or {}).get("state")
        again = f"delete {self.path} and train it again"
        *predictions, source = read_predictions(self._val_probabilities, "the run has not finished" if status !=
                                                "finished" else again, with_source=True, remedy=again)
        if self.best.is_file():
            checkpoint = load_checkpoint(self.best, mmap=True)
            recorded = checkpoint.get("val_digest")
            if recorded is None and records_val_digest(checkpoint):
                raise PipelineError(f"{self.best}: lacks the digest of its val predictions that every checkpoint of "
                                    f"pipeline {'.'.join(map(str, DIGEST_SINCE))} or later holds (re-saved by hand?); delete {self.path} "
                                    "and train it again")
            if (predictions_digest(*predictions) != recorded if recorded
                    else source and source != checkpoint_key(self.best)):
                raise PipelineError(f"{self._val_probabilities}: not the val predictions of {self.best} as it is now "
                                    "(edited, copied from another run, or the checkpoint replaced); delete "
                                    f"{self.path} and train it again")
        return tuple(predictions)

    def averaged(self) -> tuple[list[int], float] | None:
        """The epochs an --average-top best.pt averages and its val score; None for a best.pt of one epoch."""
        if not self.best.is_file():
            return None
        best = load_checkpoint(self.best, mmap=True)
        epochs, score = best.get("averaged_epochs"), best.get("averaged_score")
        return (list(epochs), float(score)) if isinstance(epochs, list) and isinstance(score, (int, float)) else None

    def top_checkpoint(self, epoch: int) -> Path:
        return self.top / f"epoch-{epoch}.pt"

    def best_checkpoint(self) -> Path:
        if not self.best.is_file() and CrossValidation(self.path).is_cv():
            raise PipelineError(f"{self.path}: a cross-validation, not one run; name one of its folds "
                                f"({self.path.name}/fold-I), or predict with all of them: `pipeline predict --run "
                                f"{self.path.name}`")
        if not self.best.is_file() and any(self.path.glob("fold-*/" + BEST)):
            raise PipelineError(f"{self.path}: holds fold runs but no cv.json, which says what the cross-validation is; "
                                "restore it, or use a fold alone (--run <cv>/fold-I)")
        if not self.best.is_file():
            raise PipelineError(f"{self.path}: no {BEST}; train it with `pipeline train` first")
        problem = self.best_problem()
        if problem:
            raise PipelineError(f"{self.best}: {problem}; restore it from a copy (or predict with the checkpoint you "
                                "mean: --checkpoint FILE)")
        return self.best

    def best_problem(self) -> str | None:
        """How best.pt differs from the run it is in: another epoch than the best one last.pt records, or other options
        (but the name and those --resume may change) than config.json's (a config.json that differs from last.pt is
        refused first, naming config.json)."""
        if not self.last.is_file() or not self._config.is_file():
            return None
        best, last = load_checkpoint(self.best, mmap=True), load_checkpoint(self.last, mmap=True)
        if best.get("epoch") != last.get("best_epoch", best.get("epoch")):
            return f"it holds epoch {best.get('epoch')}, but the run's best epoch is {last['best_epoch']} ({LAST} " \
                   "says): another epoch's checkpoint copied over it?"
        ours, theirs = self.checked_config().options, RunConfig.of_checkpoint(best, self.best).options
        differ = differing_options(ours, theirs, frozenset({"name"}))
        return f"it was trained with --{differ[0].replace('_', '-')} {getattr(theirs, differ[0])}, but this run with " \
               f"{getattr(ours, differ[0])}: another run's checkpoint copied over it?" if differ else None


@functools.lru_cache(maxsize=256)
def _finished_key(path: str, *stamp: int) -> str | None:
    """`Run._last_key` of the checkpoint at `path` as it is at `stamp` (inode, size, modification and change times):
    read and hashed once per version of the file, not on every status read."""
    try:
        return checkpoint_key(Path(path)) if written_since_digests(load_checkpoint(Path(path), mmap=True)) else None
    except PipelineError:
        return None


def checkpoint_key(path: Path) -> str:
    """Which checkpoint a file is, kept with the predictions made with it: its size and a digest of its first and
    last MiB (two checkpoints differ there; a copy to another machine does not)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as file:
        digest.update(file.read(1 << 20))
        if size > 2 << 20:
            file.seek(-(1 << 20), os.SEEK_END)
            digest.update(file.read())
    return f"{size}-{digest.hexdigest()[:16]}"


DIGEST_SINCE = (0, 3, 0)  # the first version whose validated checkpoints record val_digest


def written_since_digests(checkpoint: dict) -> bool:
    """Whether a checkpoint was written by a pipeline whose files record digests of what they hold (DIGEST_SINCE)."""
    config = checkpoint.get("config") if isinstance(checkpoint.get("config"), dict) else {}
    version = str((config.get("versions") or {}).get("pipeline", "0"))
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3]) >= DIGEST_SINCE


def records_val_digest(checkpoint: dict) -> bool:
    """Whether a checkpoint was written by a pipeline that records the digest of its epoch's val predictions (and it
    had a val split)."""
    config = checkpoint.get("config") if isinstance(checkpoint.get("config"), dict) else {}
    return written_since_digests(checkpoint) and bool((config.get("split") or {}).get("val_images"))


def predictions_digest(indices: np.ndarray, targets: np.ndarray, probabilities: np.ndarray) -> str:
    """A digest of val predictions, kept in the checkpoint that made them (`val_digest`): its val_probabilities.npz
    must hold exactly these."""
    digest = hashlib.sha256()
    for array in map(np.ascontiguousarray, (indices, targets, probabilities)):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def write_predictions(path: Path, indices: np.ndarray, targets: np.ndarray, probabilities: np.ndarray,
                      source: str = "") -> None:
    """The predictions, and (`source`) the key of the checkpoint or folds that made them."""
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        np.savez(file, indices=indices, targets=targets, probabilities=probabilities, source=np.array(source))


def read_predictions(path: Path, missing: str, with_source: bool = False, remedy: str = "train again") -> tuple:
    """(indices, targets, probabilities) as `write_predictions` saved them, and `with_source` its source key ("" in
    files from before it); `missing` says why a file may be absent, `remedy` what to do with a damaged one."""
    try:
        with np.load(path) as saved:
            indices, targets, probabilities = saved["indices"], saved["targets"], saved["probabilities"]
            source = str(saved["source"]) if "source" in saved.files else ""
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; {missing}") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise PipelineError(f"{path}: unreadable ({e or type(e).__name__}); {remedy}") from None
    if probabilities.ndim != 2 or not len(indices) == len(targets) == len(probabilities):
        raise PipelineError(f"{path}: {len(indices)} indices and {len(targets)} targets for {probabilities.shape} "
                            f"probabilities; {remedy}")
    return (indices, targets, probabilities, source) if with_source else (indices, targets, probabilities)


class CrossValidation:
    """A cross-validation folder under weights/: cv.json (the number of folds and the options every fold shares), a
    run per fold (fold-<i>/), and, once every fold has finished, oof.npz (each labeled image's probabilities from the
    fold model that did not train on it), cv_summary.json and label_issues.csv (the labeled images whose label is
    likely wrong, by confident learning over oof.npz)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.name = self.path.name
        self.oof, self.label_issues = self.path / "oof.npz", self.path / "label_issues.csv"
        self._plan, self._summary = self.path / "cv.json", self.path / "cv_summary.json"

    def is_cv(self) -> bool:
        """A folder holding cv.json (as a file, or as anything else there: `read_plan` says what is wrong)."""
        return self._plan.exists() or self._plan.is_symlink()

    @property
    def plan_file(self) -> Path:
        return self._plan

    def fold(self, index: int) -> Run:
        return Run(self.path / f"fold-{index}")

    def finished_folds(self) -> int:
        """How many of the plan's folds have finished (status finished)."""
        return len(self.finished_fold_indices())

    def finished_fold_indices(self) -> list[int]:
        """The plan's folds that have finished (status finished)."""
        return [i for i in range(self.read_plan()["folds"]) if (self.fold(i).read_status() or {}).get("state") == "finished"]

    def fold_folders(self) -> list[Path]:
        """The fold folders in it, trained, training or left by a crash (a fold that fails before its first
        checkpoint leaves none)."""
        return sorted(path for path in self.path.glob("fold-*") if path.is_dir())

    def read_plan(self) -> dict:
        """The plan in today's option names (a plan without `format` was written in format 1): an object whose
        `folds` is a number of folds --folds takes."""
        if not self._plan.is_file():
            raise PipelineError(f"{self._plan}: not a regular file (a folder, or a broken link); {self._without_plan()}")
        try:
            plan = read_json(self._plan)
        except (OSError, ValueError) as e:
            raise PipelineError(f"{self._plan}: unreadable ({e}); {self._without_plan()}") from None
        folds = plan.get("folds") if isinstance(plan, dict) else None
        low, high = FOLDS_RANGE
        if not (isinstance(folds, int) and not isinstance(folds, bool) and low <= folds <= high):
            raise PipelineError(f"{self._plan}: not the plan `pipeline train --folds K` writes (an object whose folds is "
                                f"from {low} to {high}, got {folds!r}); {self._without_plan()}")
        options = upgraded_options({k: v for k, v in plan.items() if k != "format"}, plan.get("format", 1), self._plan)
        try:
            saved_config(options, self._plan)  # known options, each value of its option's type
            return {**checked_options(options, self._plan), "format": OPTIONS_FORMAT}
        except PipelineError as e:  # edited by hand
            raise PipelineError(f"{e}; {self._without_plan()}") from None

    def _without_plan(self) -> str:
        """What to do when cv.json cannot be read: it says what the CV is, so restore it, or do without it."""
        folders = ", ".join(path.name for path in self.fold_folders()[:5]) or "none"
        return (f"restore it from a copy (the fold folders here: {folders}), use a fold alone (--run "
                f"{self.name}/fold-I), or train the cross-validation again in a new folder")

    def write_plan(self, plan: dict) -> None:
        write_text_atomic(self._plan, json.dumps(plan, indent=2) + "\n")

    def gathered(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict]:
        """The out-of-fold predictions (indices, targets, probabilities: each labeled image's, from the fold model that
        did not train on it) and their summary, computed anew from the verified folds' val predictions (each checked
        against its best.pt) whenever a CV is read: oof.npz and cv_summary.json are copies for the user, never read."""
        runs, parts = self._verified_with_predictions()
        indices = np.concatenate([p[0] for p in parts])
        labeled = sum(run.read_config().split["val_images"] for run in runs)
        if len(indices) != labeled or not np.array_equal(np.sort(indices), np.arange(labeled)):
            raise PipelineError(f"{self.path}: its folds' val images are not each labeled image once (were they trained "
                                "on different labeled sets?); train the CV again in a new folder")
        order = np.argsort(indices)
        targets = np.concatenate([p[1] for p in parts])[order]
        probabilities = np.concatenate([p[2] for p in parts])[order]
        metric = runs[0].read_config().metric  # the plan's, so every fold's
        per_fold = [scores(t, p, metric) for _, t, p in parts]
        summary = {"folds": len(runs), "images": labeled, "metric": metric,
                   "oof": scores(targets, probabilities, metric), "per_fold": per_fold,
                   "mean": {k: float(np.mean([f[k] for f in per_fold])) for k in per_fold[0]},
                   "std": {k: float(np.std([f[k] for f in per_fold])) for k in per_fold[0]}}
        return (indices[order], targets, probabilities), summary

    def write_gathered(self, predictions: tuple[np.ndarray, np.ndarray, np.ndarray], summary: dict) -> None:
        """oof.npz and cv_summary.json, as `gathered` computed them."""
        write_predictions(self.oof, *predictions)
        write_text_atomic(self._summary, json.dumps(summary, indent=2) + "\n")

    def best_checkpoints(self) -> list[Path]:
        return [run.best for run in self.verified_folds()]

    def verified_folds(self) -> list[Run]:
        """The fold runs of a CV that is what its plan says: each fold I of K trained to its end, as fold I of K, with
        the plan's options, holding its best checkpoint and the val predictions of it, and all on one labeled set.
        Anything else is one line naming the fold and what to do."""
        return self._verified_with_predictions()[0]

    def _verified_with_predictions(self) -> tuple[list[Run], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
        """`verified_folds`, and each fold's val predictions (read once, in checking them)."""
        plan = self.read_plan()
        runs = [self.fold(i) for i in range(plan["folds"])]
        for index, run in enumerate(runs):
            problem = self.fold_problem(index, plan)
            if problem:
                raise PipelineError(problem)
        configs = [run.read_config() for run in runs]
        if len({config.labeled_ids for config in configs}) > 1:
            raise PipelineError(f"{self.path}: its folds were trained on different labeled images (the dataset "
                                "changed between them); train the CV again in a new folder")
        shared = [shared_options(config.options) for config in configs]  # also those an older plan lacks
        differ = sorted({key for options in shared[1:] for key in options if options[key] != shared[0].get(key)})
        if differ:
            values = ", ".join(f"fold {i}: {options[differ[0]]}" for i, options in enumerate(shared))
            raise PipelineError(f"{self.path}: its folds were trained with different --{differ[0].replace('_', '-')} "
                                f"({values}); a CV's folds share their options: train the CV again in a new folder")
        predictions = []
        for index, (run, config) in enumerate(zip(runs, configs)):
            problem = _checkpoint_problem(run, config, index)
            if problem:
                raise PipelineError(f"{run.best}: not the checkpoint of this fold ({problem}); delete {run.path} and "
                                    f"train it again with `pipeline train --config {self.path} --fold {index} --name "
                                    f"{self.name}`")
            try:
                predictions.append(run.read_val_probabilities())  # of this best.pt, the checkpoint validated as best
            except PipelineError as e:
                raise PipelineError(f"{e} (the fold: `pipeline train --config {self.path} --fold {index} --name "
                                    f"{self.name}`)") from None
        return runs, predictions

    def _plan_edited(self, index: int, folds: int, values: dict) -> bool:
        """Whether another fold than `index` was trained with the same `values` (options that differ from the plan):
        then the folds agree and the plan is what changed."""
        for other in (self.fold(i) for i in range(folds) if i != index):
            try:
                options = shared_options(other.read_config().options)
            except PipelineError:
                continue
            if all(options.get(key) == value for key, value in values.items()):
                return True
        return False

    def _fold_command(self, index: int) -> str:
        """The command that trains fold `index` of this CV as its plan says."""
        return f"`pipeline train --config {self.path} --fold {index} --name {self.name}`"

    def misplaced_fold(self, index: int, plan: dict) -> str | None:
        """Why the run in fold-`index` is not fold `index` of the plan's folds (trained as another fold, of another
        number of folds, or as no fold), with what to do; None when it is."""
        run, folds = self.fold(index), plan["folds"]
        options = run.read_config().options
        if (options.folds, options.fold) == (folds, index):
            return None
        held = f"fold {options.fold} of {options.folds}" if options.folds else "a run of no cross-validation"
        advice = (f"restore {self._plan}'s folds or train the CV again in a new folder" if options.folds not in
                  (None, folds) else f"delete {run.path} and train it again with {self._fold_command(index)}")
        planned = f"fold {index} of {folds}" if index < folds else f"one of the {folds} folds"
        return f"{run.path}: holds {held}, not {planned} as {self._plan.name} says; {advice}"

    def trained_folds(self) -> list[Run]:
        """The fold runs in it so far (training, stopped or finished), each checked to be the fold of the plan its
        folder names (a hand-edited plan's count of folds is one line, not a fold more or less)."""
        plan, found = self.read_plan(), []
        for path in self.fold_folders():
            index = path.name.removeprefix("fold-")
            if index.isdigit() and path.name == f"fold-{int(index)}" and Run(path).looks_like_run():  # not fold-01
                misplaced = self.misplaced_fold(int(index), plan)
                if misplaced:
                    raise PipelineError(misplaced)
                found.append((int(index), Run(path)))
        return [run for _, run in sorted(found, key=lambda pair: pair[0])]

    def fold_problem(self, index: int, plan: dict) -> str | None:
        """Why fold `index` of a CV with `plan` is not a finished fold of it, with what to do; None when it is."""
        run, folds = self.fold(index), plan["folds"]
        again = self._fold_command(index)
        if not run.looks_like_run():
            return f"{run.path}: fold {index} of {folds} is not trained; train it with {again}"
        status = run.read_status() or {}
        if status.get("state") != "finished":
            if run.training_pid():
                return f"{run.path}: fold {index} is still training; use the CV once it has finished"
            if status.get("state") == "running" and status.get("host") != socket.gethostname():
                return f"{run.path}: fold {index} is training on {status.get('host')}, or crashed there; use the CV " \
                       "once it has finished"
            if not status:
                return f"{run.path}: fold {index} has no readable status.json, which says whether it finished; " \
                       f"delete {run.path} and train it again with {again}"
            state = "crashed" if status["state"] == "running" else status["state"]
            if not run.last.is_file() and run.best.is_file():
                return f"{run.path}: fold {index} is {state}, and its {LAST} is missing beside its {BEST} (moved or " \
                       f"deleted?); restore {LAST}, or delete {run.path} and train it again with {again}"
            if not run.last.is_file():  # stopped before its first checkpoint: nothing to continue
                return f"{run.path}: fold {index} is {state}, before its first checkpoint; delete {run.path} and " \
                       f"train it again with {again}"
            return f"{run.path}: fold {index} is {state}; continue it with `pipeline train --resume {run.path}`"
        misplaced = self.misplaced_fold(index, plan)
        if misplaced:
            return misplaced
        trained = shared_options(run.read_config().options)
        differ = plan_differences(plan, trained)
        if differ:
            shown = ", ".join(f"--{key.replace('_', '-')} {trained[key]} (plan: {plan[key]})" for key in differ[:3])
            if self._plan_edited(index, folds, {key: trained[key] for key in differ}):
                return (f"{self._plan}: its folds were trained with {shown.replace('plan: ', f'{self._plan.name}: ')} "
                        f"({self._plan.name} edited by hand?); restore {', '.join(differ[:3])} in it as the folds have "
                        "them")
            return (f"{run.path}: fold {index} was trained with other options than {self._plan} holds: {shown}; "
                    f"a CV's folds share them: delete {run.path} and train it again with {again}, or train the CV "
                    "again in a new folder")
        if not run.best.is_file():
            return f"{run.path}: fold {index} has no {BEST}; delete {run.path} and train it again with {again}"
        return None


def _checkpoint_problem(run: Run, config: RunConfig, index: int) -> str | None:
    """How fold `index`'s best.pt, as it says itself (read without its tensors), differs from its run's config and
    from its run's best epoch."""
    checkpoint = load_checkpoint(run.best, mmap=True)
    saved = RunConfig.of_checkpoint(checkpoint, run.best)
    if saved.options.fold != index:
        return f"it was trained as fold {saved.options.fold} of {saved.options.folds}"
    if saved.labeled_ids != config.labeled_ids:
        return "it was trained on other labeled images"
    best_epoch = (load_checkpoint(run.last, mmap=True) if run.last.is_file() else checkpoint).get(
        "best_epoch", checkpoint.get("epoch"))  # last.pt knows the best epoch of the whole run
    if best_epoch != checkpoint.get("epoch"):
        return f"it holds epoch {checkpoint.get('epoch')}, not the fold's best epoch {best_epoch} (another epoch's " \
               "checkpoint copied over it?)"
    theirs, ours = shared_options(saved.options), shared_options(config.options)
    differ = [key for key in ours if theirs.get(key) != ours[key]]
    return ", ".join(f"it says --{key.replace('_', '-')} {theirs.get(key)} where config.json says {ours[key]}"
                     for key in differ[:3]) or None


def plan_differences(plan: dict, trained: dict) -> list[str]:
    """The options a CV's plan holds otherwise than a fold was trained with (`trained`: its `shared_options`)."""
    return [key for key in plan if key != "format" and key in trained and trained[key] != plan[key]]


def differing_options(ours: TrainConfig, theirs: TrainConfig, ignored: frozenset[str] = frozenset()) -> list[str]:
    """The options in which two configs of one run differ, but those --resume may change and `ignored`."""
    return [key for key in asdict(ours) if key not in RESUME_OVERRIDES | ignored
            and getattr(ours, key) != getattr(theirs, key)]


def shared_options(options: TrainConfig) -> dict:
    """The options every fold of a CV shares (all but where and how fast a fold runs), as JSON reads them back."""
    return json.loads(json.dumps({key: value for key, value in asdict(options).items() if not OPTION[key].per_fold}))


@contextlib.contextmanager
def claimed_cv(weights_root: Path, name: str | None, plan: dict) -> Iterator[CrossValidation]:
    """claim_cv's folder, for a block training its folds. Should the block fail before a fold folder exists in
    a CV folder this call made, the folder goes: the corrected command starts it afresh."""
    cv, made = claim_cv(weights_root, name, plan)
    try:
        yield cv
    except BaseException:
        if made and not cv.fold_folders():
            shutil.rmtree(cv.path, ignore_errors=True)
        raise


def claim_cv(weights_root: Path, name: str | None, plan: dict) -> tuple[CrossValidation, bool]:
    """weights/<name> for a cross-validation with `plan`: made, or taken up again when it holds the same plan (its
    other folds trained elsewhere or earlier, or at this moment by another process); without a name the first free
    of cv, cv2, …; and whether this call made it."""
    candidates = [name] if name else ("cv" if k == 1 else f"cv{k}" for k in itertools.count(1))
    for candidate in candidates:
        try:
            (weights_root / candidate).mkdir(parents=True)
        except FileExistsError:
            if name:  # there already: earlier, elsewhere, or by another process a moment ago
                return _take_up(CrossValidation(weights_root / name), plan), False
            continue
        except OSError as e:
            raise PipelineError(f"{weights_root}: cannot create a folder in it ({e.strerror}); train from a folder "
                                "you can write") from None
        cv = CrossValidation(weights_root / candidate)
        cv.write_plan(plan)
        return cv, True
    raise AssertionError("unreachable: the unnamed candidates never end")


PLAN_WAIT_S = 5.0  # how long an empty CV folder (another process has just made it) may go without its plan


def _take_up(cv: CrossValidation, plan: dict) -> CrossValidation:
    """`cv` again, when it is a cross-validation of `plan`. A folder holding nothing but temporary files is one
    another process is making: its plan follows within PLAN_WAIT_S."""
    deadline = time.monotonic() + PLAN_WAIT_S
    while not cv.is_cv() and time.monotonic() < deadline and \
            cv.path.is_dir() and all(entry.name.startswith(".") for entry in cv.path.iterdir()):
        time.sleep(0.05)
    if not cv.is_cv():
        raise PipelineError(f"{cv.path} already exists and is not a cross-validation folder: choose another --name")
    saved = cv.read_plan()
    if {**plan, **saved} == plan:  # options added since the plan was written are not compared
        return cv
    if not cv.fold_folders():  # nothing trained or training under the old plan: these options replace it
        cv.write_plan(plan)
        return cv
    raise PipelineError(f"{cv.path} holds a cross-validation with other options or folds; fold runs gathered there "
                        f"must share them: choose another --name, or train with its options (--config {cv.path})")


def status_process_alive(status: dict) -> bool:
    """Whether the process a running status names is alive and is that process: one started after the status was
    written holds a reused number (a restarted container numbers its processes anew), so the run's died."""
    pid = status.get("pid")
    if not isinstance(pid, int) or not process_alive(pid):
        return False
    started = process_start_time(pid)
    try:
        written = datetime.fromisoformat(str(status.get("updated"))).timestamp()
    except ValueError:
        return True
    return started is None or started <= written + 2  # the status is written to the second


def process_start_time(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), from Linux's /proc; None where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def claim_run(weights_root: Path, name: str | None) -> Run:
    """Create weights/<name>, or the first free of exp, exp2, exp3, …, marked running by this process at once (a
    folder whose process died before it wrote anything else is taken again)."""
    candidates = [name] if name else ("exp" if k == 1 else f"exp{k}" for k in itertools.count(1))
    for candidate in candidates:
        try:
            if abandoned(Run(weights_root / candidate)):
                shutil.rmtree(weights_root / candidate)
            (weights_root / candidate).mkdir(parents=True)
            Run(weights_root / candidate).set_status("running")
            return Run(weights_root / candidate)
        except FileExistsError:
            if name and (weights_root / name).is_file():
                raise PipelineError(f"{weights_root / name}: a file where the run's folder goes; move it aside, or "
                                    "choose another --name") from None
            if name:
                existing = Run(weights_root / name)
                raise PipelineError(
                    f"{weights_root / name} already exists: choose another --name"
                    + (f" (process {existing.training_pid()} is training it)" if existing.training_pid() else
                       " or continue it with --resume" if existing.looks_like_run() else " (it is a folder of no run)")
                ) from None
        except OSError as e:
            raise PipelineError(f"{weights_root}: cannot create a run folder in it ({e.strerror}); train from a "
                                "folder you can write") from None
    raise AssertionError("unreachable")


def abandoned(run: Run) -> bool:
    """A run folder holding nothing but the status of a process of this machine that died while setting it up."""
    if not run.path.is_dir() or {entry.name for entry in run.path.iterdir()} != {"status.json"}:
        return False
    status = run.read_status() or {}
    return status.get("state") == "running" and status.get("host") == socket.gethostname() and \
        isinstance(status.get("pid"), int) and not status_process_alive(status)


def resolve_run(name: Path, weights_root: Path | None = None) -> Path:
    """A run given as its name under weights/ or as a folder path (a bare name that is both means the run)."""
    candidate = (weights_root or weights_dir()) / name
    if len(name.parts) == 1 and candidate.is_dir():
        return candidate
    if name.is_dir():
        return name
    if candidate.is_dir():
        return candidate
    if name.is_file() and Run(name.parent).looks_like_run():
        raise PipelineError(f"{name}: a file of run {name.parent}, not a run; give the run's folder ({name.parent})")
    raise PipelineError(f"{name}: no such run (neither a folder nor a run under {weights_root or weights_dir()})")


def is_run_reference(path: Path) -> bool:
    """Whether `path` names a run rather than another file: a folder, a run's config.json, or no file (a run's
    name, which may hold a dot: lr0.05)."""
    return path.is_dir() or path.name == CONFIG or not path.exists()


def past_run_options(path: Path) -> dict:
    """The options of the run `path` names (its folder, its name under weights/ or its config.json), without its
    name: what training it again as a new run takes; of a cross-validation folder, the options its folds share."""
    folder = resolve_run(path.parent if path.name == CONFIG else path)
    if CrossValidation(folder).is_cv():
        return {option: value for option, value in CrossValidation(folder).read_plan().items() if option != "format"}
    run = Run(folder)
    return {option: value for option, value in asdict(run.checked_config().options).items() if option != "name"}


def images_in_words(height: int, width: int, channels: int) -> str:
    """`32×32 colour images`."""
    return f"{width}×{height} { {1: 'greyscale', 3: 'colour'}.get(channels, f'{channels}-channel')} images"


def trained_images_unlike(config: RunConfig, height: int, width: int, channels: int | None = None) -> str | None:
    """The images a model of `config` was trained on, in words, where images of this shape are unlike them (their
    channels, unless None: not compared, and their size unless the model resizes its inputs: --img-size); None when
    they are alike."""
    resizes = config.options.img_size is not None or not config.image_size
    trained = (height, width) if resizes else tuple(config.image_size)
    if trained == (height, width) and channels in (None, config.channels):
        return None
    return images_in_words(*trained, config.channels)


def latest_best_checkpoint(weights_root: Path) -> tuple[Path, str]:
    """The best checkpoint of the newest finished run under `weights_root` (newest: its best checkpoint's
    last write), else of the newest run in any state (running, failed, …); and why that one."""
    candidates = list(weights_root.glob(f"*/{BEST}")) if weights_root.is_dir() else []
    if not candidates:
        raise PipelineError(f"{weights_root}: no trained run (no */{BEST}); run `pipeline train` first")
    states = {path: (Run(path.parent).read_status() or {}).get("state", "unknown") for path in candidates}
    finished = [path for path in candidates if states[path] == "finished"]
    newest = max(finished or candidates, key=lambda p: p.stat().st_mtime)
    folds = [path for path in weights_root.glob(f"*/fold-*/{BEST}") if path.stat().st_mtime > newest.stat().st_mtime]
    cv = max(folds, key=lambda p: p.stat().st_mtime).parent.parent.name if folds else None  # the newest CV
    newer = f"; the cross-validation {cv} is newer (`--run {cv}` predicts with its folds)" if cv else ""
    if finished:
        return newest, f"the newest finished run{newer}"
    return newest, f"no run has finished; this is the newest, and it is {states[newest]}"


def checkpoint_label(checkpoint: Path) -> str:
    """`exp3` for weights/exp3/best.pt, `exp3-last` for its last.pt, the file's stem otherwise."""
    if checkpoint.name == BEST:
        folder = checkpoint.parent
        return f"{folder.parent.name}-{folder.name}" if CrossValidation(folder.parent).is_cv() else folder.name
    if checkpoint.name == LAST:
        return f"{checkpoint.parent.name}-last"
    return checkpoint.stem


def save_checkpoint(path: Path, checkpoint: dict, copies: Sequence[Path] = ()) -> None:
    """Serialize `checkpoint` once, atomically, to `path`; each of `copies` becomes the same file (`link_atomic`),
    in order, before `path` is replaced."""
    with atomic_path(path) as tmp:
        try:
            torch.save(checkpoint, tmp)
        except RuntimeError as e:  # torch's writer reports a full disk as a RuntimeError
            raise write_failure(path, e) from None
        for copy in copies:
            link_atomic(tmp, copy)


def load_checkpoint(path: Path, mmap: bool = False) -> dict:
    """A pipeline checkpoint, loaded without running any pickled code (`mmap`: its tensors mapped, not read)."""
    from pipeline.models import safe_torch_load

    if not path.is_file():
        raise PipelineError(f"{path}: checkpoint not found")
    checkpoint = safe_torch_load(path, mmap)
    if not isinstance(checkpoint, dict) or not {"model", "config", "epoch"} <= checkpoint.keys():
        raise PipelineError(f"{path}: not a pipeline checkpoint (no model/config/epoch entries); restore it from a "
                            "copy, or train the run again with `pipeline train`")
    return checkpoint


def inference_weights(checkpoint: dict, source: object = "the checkpoint") -> dict[str, torch.Tensor]:
    """The weights to predict with: the EMA of the weights when the run kept one, else the model's."""
    weights = checkpoint.get("ema")
    weights = checkpoint["model"] if weights is None else weights
    if not isinstance(weights, dict) or not all(torch.is_tensor(w) for w in weights.values()):
        raise PipelineError(f"{source}: its weights are not a state dict of tensors; not a usable checkpoint: restore "
                            "it from a copy, or train the run again with `pipeline train`")
    return weights


class CheckpointSaver:
    """Owns best.pt, last.pt and top/ (as timm's CheckpointSaver): `save` writes last, best when the score of
    `metric` improves (or on every epoch when there is no score: --full runs) and, with `keep_top` > 1, the
    checkpoints of the `keep_top` best epochs, atomically, each epoch serialized once (the others hard links to
    that file); returns the best so far. Earlier epochs win ties."""

    def __init__(self, run: Run, metric: str, best_score: float | None = None, best_epoch: int = 0,
                 keep_top: int = 1, top: list | None = None):
        self.run, self.metric, self.best_score, self.best_epoch = run, metric, best_score, best_epoch
        self.keep_top = keep_top
        self.top = [tuple(kept) for kept in top or []]  # (score, epoch) of the kept best epochs, best first

    def improves(self, score: float | None) -> bool:
        return score is None or self.best_score is None or better(self.metric, score, self.best_score)

    def save(self, state: dict, epoch: int, score: float | None, write: bool = True) -> tuple[float | None, int]:
        """Record `epoch`'s `score`; with `write` (rank 0) save `state` (a checkpoint dict without the best_* and
        top entries) to last.pt, to best.pt when it is the best so far, and to top/ when it is among the
        `keep_top` best."""
        if self.improves(score):
            self.best_score = score if score is not None else self.best_score
            self.best_epoch = epoch
        before = self.top
        if self.keep_top > 1 and score is not None:
            sign = -1 if HIGHER_IS_BETTER[self.metric] else 1
            self.top = sorted([*self.top, (score, epoch)], key=lambda kept: (sign * kept[0], kept[1]))[:self.keep_top]
        if write:
            state = {**state, "epoch": epoch, "best_score": self.best_score, "best_epoch": self.best_epoch,
                     "top": self.top}
            copies = [self.run.top_checkpoint(epoch)] if (score, epoch) in self.top else []
            if copies:
                self.run.top.mkdir(exist_ok=True)
            if self.best_epoch == epoch:
                copies.append(self.run.best)
                self.run.onnx.unlink(missing_ok=True)  # `pipeline export`'s file of the best.pt replaced now
            # serialized once: best and top/ are hard links to it; last goes last, as it lists the top it needs,
            # and those that left go after it
            save_checkpoint(self.run.last, state, copies)
            for _, dropped in set(before) - set(self.top):
                self.run.top_checkpoint(dropped).unlink(missing_ok=True)
        return self.best_score, self.best_epoch

    def top_checkpoints(self) -> list[dict]:
        """The kept best epochs' checkpoints, best first."""
        return [load_checkpoint(self.run.top_checkpoint(epoch)) for _, epoch in self.top]

    def replace_best(self, state: dict) -> None:
        """best.pt becomes `state` (--average-top: the best epoch's checkpoint with averaged weights)."""
        self.run.onnx.unlink(missing_ok=True)
        save_checkpoint(self.run.best, state)
