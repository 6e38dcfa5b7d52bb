"""`pipeline runs` and `pipeline compare`: every run under weights/ as one table, and overlays of runs.

A run's status comes from its saved status (written by `pipeline train`): a run marked running whose
process is gone from this machine crashed; runs from before that file are judged by their epochs.
"""
from __future__ import annotations

import json
import math
import socket
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from pipeline.config import TrainConfig, has_stem
from pipeline.errors import PipelineError
from pipeline.figures import log_scale_if_wide, save_figure
from pipeline.metrics import METRIC_LABELS, scores
from pipeline.run import (CrossValidation, MetricsSummary, Run, RunConfig, load_checkpoint, resolve_run,
                          status_process_alive, summarize_metrics)
from pipeline.workspace import dataset_dir, weights_dir

# best: the best val score of the run's metric, at epoch best_epoch, where it had val accuracy val_acc
COLUMNS = ("run", "date", "model", "stem", "pretrained", "recipe", "taught", "optimizer", "lr", "schedule", "epochs", "epochs_planned",
           "metric", "best", "best_epoch", "val_acc", "macro_f1", "wall_s", "images_per_s", "status")
HEADERS = {"best_epoch": "@epoch", "val_acc": "acc", "macro_f1": "macro-F1", "wall_s": "wall-s",
           "images_per_s": "img/s"}  # as `pipeline runs` heads these columns (others: their names)
NUMERIC = {"lr", "epochs", "epochs_planned", "best", "best_epoch", "val_acc", "macro_f1", "wall_s", "images_per_s"}


def run_status(run: Run, epochs_done: int, epochs_planned: int | None) -> str:
    status = run.read_status()
    state = status["state"] if status else None
    if state == "running":
        if status.get("host") != socket.gethostname():
            return f"running on {status.get('host')}?"
        return "running" if status_process_alive(status) else "crashed"
    if state is not None:
        return state
    if run.status_file.exists():  # written by every run since the file exists: unreadable, or edited by hand
        return "unknown"
    if epochs_planned is not None and epochs_done >= epochs_planned:
        return "finished"
    return "incomplete"


def _schedule(options: TrainConfig) -> str:
    if options.schedule in ("onecycle", "triangle"):
        return options.schedule
    if options.schedule == "cosine":
        return f"cosine, warm-up {options.warmup_epochs:g}" if options.warmup_epochs else "cosine"
    milestones = options.milestones
    return "step " + ",".join(map(str, milestones)) if milestones else "constant"


def describe_run(run: Run) -> dict:
    """One row of the runs table; what cannot be read is left empty and said in `status`."""
    row: dict = {column: None for column in COLUMNS} | {"run": run.name}
    problems = []
    try:
        config = run.checked_config()
    except PipelineError as e:
        config, problems = None, [_in_run(run, e)]
    if config is not None:
        options = config.options
        row.update(date=config.created[:16].replace("T", " "), model=options.model,
                   stem=options.stem if has_stem(options.model) else None,
                   pretrained=Path(options.pretrained).name if options.pretrained else "no",
                   recipe=options.recipe, taught=_taught(options, config.split), optimizer=options.optimizer,
                   lr=options.lr, schedule=_schedule(options), epochs_planned=options.epochs)
    try:
        metrics = run.read_metrics()
        summary = summarize_metrics(metrics, config.metric if config else "accuracy")
    except PipelineError as e:
        summary = None
        if run.has_metrics() or run_status(run, 0, None) != "crashed":  # crashed before an epoch: nothing more to say
            problems.append(_in_run(run, e).split(" (")[0])
    disagreement = log_disagrees(run, metrics, summary) if summary is not None else None
    if disagreement:
        problems.append(disagreement)
        summary = replace(summary, best_score=None, best_epoch=None, val_acc=None, val_f1=None, wall_s=None,
                          images_per_s=None)
    if summary is not None:
        row.update(epochs=summary.epochs, wall_s=_rounded(summary.wall_s, 1), images_per_s=_rounded(summary.images_per_s, 1),
                   metric=summary.metric if summary.best_score is not None else None,
                   best=_rounded(summary.best_score, 4), best_epoch=summary.best_epoch,
                   val_acc=_rounded(summary.val_acc, 4), macro_f1=_rounded(summary.val_f1, 4))
    averaged = run.averaged() if summary is not None and summary.best_score is not None and not problems else None
    if averaged:  # --average-top: the scores of what best.pt holds, from its val predictions
        row.update(best=_rounded(averaged[1], 4), best_epoch=None, val_acc=None, macro_f1=None)
        problems.append(f"best.pt averages epochs {', '.join(map(str, averaged[0]))}")
        try:
            held = averaged_scores(run)
            row.update(val_acc=_rounded(held["accuracy"], 4), macro_f1=_rounded(held["f1_macro"], 4))
        except PipelineError as e:
            problems.append(_in_run(run, e))
    status = run_status(run, summary.epochs if summary else 0, row["epochs_planned"])
    if config is not None and config.split.get("val_leak"):  # said, but no problem of its files
        problems.append(f"its val scores may flatter it: {config.split['val_leak']}")
    problems = list(dict.fromkeys(problems))  # one damaged file can fail several reads
    row["status"] = status if not problems or status == "running" else f"{status}: {'; '.join(problems)}"
    return row


def averaged_scores(run: Run) -> dict:
    """An --average-top run's accuracy, macro-F1 and log loss of what best.pt holds, from its val predictions (those
    of best.pt as it is now)."""
    _, targets, probabilities = run.read_val_probabilities()
    return scores(targets, probabilities)


def _in_run(run: Run, error: PipelineError) -> str:
    """An error's line without the run's own path: the file of the run it names (`last.pt: ...`), else its text."""
    where, _, what = str(error).partition(": ")
    inside = Path(where).relative_to(run.path) if Path(where).is_relative_to(run.path) and where else None
    return f"{inside}: {what}" if inside not in (None, Path(".")) else what


def log_disagrees(run: Run, metrics: pd.DataFrame, summary: MetricsSummary) -> str | None:
    """What metrics.csv (a log for the user) says against what the checkpoints record of their own epochs: best.pt's
    row and score, last.pt's epoch (the last logged) and rows (every epoch's, where it keeps them); None when they
    agree, or no checkpoint is there."""
    for path, epoch in ((run.best, summary.best_epoch if summary.best_score is not None else None),
                        (run.last, int(metrics["epoch"].max()))):
        if epoch is None or not path.is_file():
            continue
        try:
            checkpoint = load_checkpoint(path, mmap=True)
        except PipelineError as e:
            return _in_run(run, e)
        if checkpoint.get("epoch") != epoch:
            return f"metrics.csv names epoch {epoch}, but {path.name} holds epoch {checkpoint.get('epoch')} " \
                   f"(metrics.csv edited, or {path.name} replaced?)"
        history = checkpoint.get("history") if path == run.last else None
        problem = _rows_differ(metrics, history or [{"epoch": epoch, **(checkpoint.get("metrics") or {})}], path.name,
                               whole=bool(history))
        if problem:
            return problem
    return None


def _rows_differ(metrics: pd.DataFrame, rows: list[dict], name: str, whole: bool) -> str | None:
    """How metrics.csv differs from the metrics rows checkpoint `name` recorded (`whole`: every epoch's, so its
    epochs must be those logged too); None when it does not."""
    logged_epochs, saved_epochs = sorted(metrics["epoch"].tolist()), sorted(row.get("epoch") for row in rows)
    if whole and logged_epochs != saved_epochs:
        return f"metrics.csv logs epochs {_epochs(logged_epochs)}, but {name} recorded {_epochs(saved_epochs)} " \
               f"(metrics.csv edited, or {name} another run's?)"
    for saved in rows:
        logged = metrics[metrics["epoch"] == saved.get("epoch")].iloc[-1]
        differ = [key for key, value in saved.items() if isinstance(value, (int, float)) and key in logged.index
                  and not _same_number(float(logged[key]), float(value))]
        if differ:
            return f"metrics.csv's epoch {saved['epoch']} says {differ[0]} {float(logged[differ[0]]):.4g}, but " \
                   f"{name} recorded {saved[differ[0]]:.4g} (metrics.csv edited, or {name} another run's?)"
    return None


def _epochs(epochs: list) -> str:
    return ", ".join(map(str, epochs[:8])) + (" …" if len(epochs) > 8 else "")


def _same_number(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def _taught(options: TrainConfig, split: dict) -> str:
    """What taught a run beside its labels: `pseudo SOURCE +N` (test images joined), `teacher SOURCE`; else "no"."""
    parts = ([f"pseudo {options.pseudo} +{split.get('pseudo_images', '?')}"] if options.pseudo else []) + \
        ([f"teacher {options.teacher}"] if options.teacher else [])
    return ", ".join(parts) or "no"


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def list_runs(weights_root: Path | None = None, sort: str | None = None, descending: bool = False) -> pd.DataFrame:
    """The runs table (COLUMNS), oldest first, or by the column `sort` names."""
    weights_root = weights_root or weights_dir()
    sort = {header: column for column, header in HEADERS.items()}.get(sort, sort)  # as shown, or the column
    if sort is not None and sort not in COLUMNS:
        raise PipelineError(f"--sort {sort!r}: choose one of {', '.join(HEADERS.get(c, c) for c in COLUMNS if c != 'epochs_planned')}")
    folders = sorted(weights_root.iterdir()) if weights_root.is_dir() else []
    rows = [describe_run(Run(f)) for f in folders if Run(f).looks_like_run()]
    for cv in cross_validations(weights_root):  # each fold run as <cv>/fold-I
        rows += [describe_run(run) | {"run": f"{cv.name}/{run.name}"}
                 for run in (Run(f) for f in sorted(cv.path.iterdir())) if run.looks_like_run()]
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in NUMERIC:
        table[column] = pd.to_numeric(table[column])
    table = table.sort_values("date", na_position="last", kind="stable")  # ties in `sort` stay oldest first
    if sort is not None:
        table = table.sort_values(sort, ascending=not descending, na_position="last", kind="stable")
    return table.reset_index(drop=True)


def cross_validations(weights_root: Path | None = None) -> list[CrossValidation]:
    """The cross-validation folders under weights/, by name."""
    weights_root = weights_root or weights_dir()
    folders = sorted(weights_root.iterdir()) if weights_root.is_dir() else []
    return [CrossValidation(f) for f in folders if CrossValidation(f).is_cv()]


def cv_line(cv: CrossValidation) -> str:
    """A CV's line in `pipeline runs`: its scores, computed from its folds, or what is wrong or missing."""
    try:
        plan = cv.read_plan()
        folds, done = plan["folds"], cv.finished_folds()
        if done < folds:
            problem = next(filter(None, (cv.fold_problem(index, plan) for index in range(folds))))
            return f"cross-validation {cv.name} ({folds} folds): {done} of {folds} folds finished; {problem}"
        summary = cv.gathered()[1]
    except PipelineError as e:  # listed with what is wrong, as a broken run is
        return f"cross-validation {cv.name}: {e}"
    label = METRIC_LABELS[summary["metric"]]
    oof, mean, std = (summary[part][summary["metric"]] for part in ("oof", "mean", "std"))
    line = f"cross-validation {cv.name} ({folds} folds): out-of-fold {label} {oof:.4f}, fold {label} {mean:.4f} ± {std:.4f}"
    if not cv.oof.is_file():
        line += f"; its oof.npz and cv_summary.json are not written: `pipeline train --config {cv.path} --name {cv.name}`"
    return line


def _flatten(options: dict) -> dict:
    return {key: json.dumps(value) if isinstance(value, (list, dict)) else value for key, value in options.items()}


def run_folders(folder: Path) -> list[Path]:
    """A run's folder, or a cross-validation's fold runs trained so far."""
    cv = CrossValidation(folder)
    return [run.path for run in cv.trained_folds()] if cv.is_cv() else [folder]


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_output(path: Path, option: str, suffix: str, what: str, same_kind: Callable[[Path], bool]) -> None:
    """A file named for a command's output (`option`): a `suffix` file, which replaces only an earlier output of its
    kind (`same_kind`), never a file of a run, of a cross-validation or of dataset/."""
    if path.suffix.lower() != suffix:
        raise PipelineError(f"{path}: {option} writes {what} as a {suffix} file; name a path ending in {suffix}")
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_file():
        raise PipelineError(f"{path}: not a regular file (a folder, device or pipe); name another file with {option}")
    resolved = path.resolve()
    owner = next((folder for folder in resolved.parents if Run(folder).looks_like_run() or
                  CrossValidation(folder).is_cv()), None)
    owner = owner or next((folder for folder in resolved.parents if folder == dataset_dir().resolve()), None)
    if owner is not None or not same_kind(path):
        raise PipelineError(f"{path}: exists and is " + (f"a file of {owner}" if owner else f"not {what} written "
                            f"before") + f", which {option} never replaces; name another file")


def compare_runs(runs: list[Path], output: Path | None = None, weights_root: Path | None = None) -> tuple[Path, pd.DataFrame]:
    """Overlay the runs' curves in one figure; return its path and a table of what differs between them."""
    folders = [folder for run in runs for folder in run_folders(resolve_run(run, weights_root))]
    twice = next((folder for index, folder in enumerate(folders) if folder.resolve() in
                  {other.resolve() for other in folders[:index]}), None)
    if twice is not None:
        raise PipelineError(f"{twice}: named twice (a run, or a CV and its fold); name each run once")
    if len(folders) < 2:
        raise PipelineError("compare needs at least two runs (or a cross-validation, whose folds it compares)")
    names = [folder.name for folder in folders]
    if len(set(names)) < len(names):
        names = [f"{folder.parent.name}/{folder.name}" for folder in folders]
    if len(set(names)) < len(names):
        names = [str(folder) for folder in folders]
    compared = [Run(folder) for folder in folders]
    configs = [run.checked_config() for run in compared]
    metrics = [run.read_metrics() for run in compared]
    for run, config, frame in zip(compared, configs, metrics):  # what runs would list as disagreeing is not shown
        disagreement = log_disagrees(run, frame, summarize_metrics(frame, config.metric))
        if disagreement:
            raise PipelineError(f"{run.path}: {disagreement}; restore the file that changed from a copy")
    shared = {config.metric for config in configs}
    metric = shared.pop() if len(shared) == 1 and all("val_score" in m for m in metrics) else "accuracy"
    output = output or (weights_root or weights_dir()) / "compare.png"
    check_output(output, "--output", ".png", "a figure", lambda path: path.read_bytes()[:8] == PNG_SIGNATURE)
    save_figure(_compare_figure(names, metrics, metric), output)
    averaged = [(epochs, averaged_scores(run)) if epochs else None for run, epochs in
                ((run, run.averaged()) for run in compared)]
    return output, _differences(names, configs, metrics, averaged)


def _compare_figure(names: list[str], metrics: list[pd.DataFrame], metric: str) -> Figure:
    """The runs' val score, val loss, train accuracy and train loss per epoch, one panel each."""
    figure = Figure(figsize=(12, 8.5), layout="constrained")
    axes = figure.subplots(2, 2, sharex=True)
    val_score = ("val", "score", METRIC_LABELS[metric]) if metric != "accuracy" else ("val", "acc", "accuracy")
    panels = (val_score, ("val", "loss", "loss"), ("train", "acc", "accuracy"), ("train", "loss", "loss"))
    for ax, (split, key, label) in zip(axes.flat, panels):
        if key == "loss":
            log_scale_if_wide(ax, pd.concat([frame[f"{split}_loss"] for frame in metrics]).to_numpy())
        for name, frame in zip(names, metrics):
            ax.plot(frame["epoch"], frame[f"{split}_{key}"], marker="o" if len(frame) <= 30 else None, ms=3, label=name)
        ax.set_title(f"{split} {label}")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=min(len(names), 4), frameon=False)
    figure.suptitle("Compare: " + " vs ".join(names))
    return figure


def _differences(names: list[str], configs: list[RunConfig], metrics: list[pd.DataFrame],
                 averaged: list[tuple | None]) -> pd.DataFrame:
    """The options (and the data each trained on, as it recorded it) in which the runs differ, and their results: of
    best.pt, which for an --average-top run (`averaged`: its epochs and score, and its val predictions' scores) is not
    one epoch's."""
    options = [_flatten(asdict(config.options)) | {
        "images decoded at": "×".join(map(str, config.image_size[::-1])) or None, "channels": config.channels,
        "labeled set (digest)": config.labeled_ids[:12] or None} for config in configs]
    keys = [key for key in options[0] if key != "name"]
    keys += [key for opts in options[1:] for key in opts if key not in keys and key != "name"]
    differing = [key for key in keys if len({json.dumps(opts.get(key)) for opts in options}) > 1]
    table = pd.DataFrame({name: [opts.get(key) for key in differing] for name, opts in zip(names, options)},
                         index=differing, dtype=object)  # rows of names and of numbers
    summaries = [summarize_metrics(m, config.metric) for m, config in zip(metrics, configs)]
    summaries = [replace(s, best_score=held[0][1], val_acc=held[1]["accuracy"], best_epoch=f"average of "
                         f"{', '.join(map(str, held[0][0]))}") if held else s for s, held in zip(summaries, averaged)]
    for label, values in (("metric", [s.metric for s in summaries]),
                          ("best val score", [_rounded(s.best_score, 4) for s in summaries]),
                          ("val acc at best", [_rounded(s.val_acc, 4) for s in summaries]),
                          ("best epoch", [s.best_epoch for s in summaries]),
                          ("epochs trained", [s.epochs for s in summaries]),
                          ("wall s", [_rounded(s.wall_s, 1) for s in summaries])):
        table.loc[label] = values
    return table

