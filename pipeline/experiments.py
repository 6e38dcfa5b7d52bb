"""`pipeline runs` and `pipeline compare`: every run under weights/ as one table, and overlays of runs.

A run's status comes from its `status.json` (written by `pipeline train`): a run marked running whose
process is gone from this machine crashed; runs from before that file are judged by their epochs.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from pipeline.errors import PipelineError
from pipeline.report import best_epoch_row, log_scale_if_wide, read_metrics, read_run_config, save_figure
from pipeline.workspace import weights_dir

COLUMNS = ("run", "date", "model", "stem", "pretrained", "recipe", "lr", "schedule", "epochs", "epochs_planned",
           "best_acc", "best_epoch", "macro_f1", "wall_s", "images_per_s", "status")
NUMERIC = {"lr", "epochs", "epochs_planned", "best_acc", "best_epoch", "macro_f1", "wall_s", "images_per_s"}


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def run_status(run_dir: Path, epochs_done: int, epochs_planned: int | None) -> str:
    try:
        status = json.loads((run_dir / "status.json").read_text())
        state = status["state"]
    except (OSError, ValueError, KeyError, TypeError):
        status, state = None, None
    if state == "running":
        if status.get("host") != socket.gethostname():
            return f"running on {status.get('host')}?"
        return "running" if _process_alive(int(status.get("pid", -1))) else "crashed"
    if state in ("finished", "interrupted", "failed"):
        return state
    if epochs_planned is not None and epochs_done >= epochs_planned:
        return "finished"
    return "incomplete"


def _schedule(options: dict) -> str:
    if options.get("schedule") == "onecycle":
        return "onecycle"
    milestones = options.get("milestones") or []
    return "step " + ",".join(map(str, milestones)) if milestones else "constant"


def describe_run(run_dir: Path) -> dict:
    """One row of the runs table; what cannot be read is left empty and said in `status`."""
    row: dict = {column: None for column in COLUMNS} | {"run": run_dir.name}
    problems = []
    try:
        config = read_run_config(run_dir)
    except PipelineError as e:
        config, problems = None, [str(e).split(": ", 1)[1]]
    if config is not None:
        options = config["options"]
        row.update(date=str(config.get("created", ""))[:16].replace("T", " "), model=options.get("model"),
                   stem=options.get("stem"), pretrained=Path(options["pretrained"]).name if options.get("pretrained") else "no",
                   recipe=options.get("recipe"), lr=options.get("lr"), schedule=_schedule(options),
                   epochs_planned=options.get("epochs"))
    try:
        metrics = read_metrics(run_dir)
    except PipelineError as e:
        metrics = None
        problems.append(str(e).split(": ", 1)[1].split(" (")[0])
    epochs_done = 0
    if metrics is not None:
        epochs_done = int(metrics["epoch"].max())
        row.update(epochs=epochs_done, wall_s=round(float(metrics["wall_s"].iloc[-1]), 1) if "wall_s" in metrics else None,
                   images_per_s=round(float(metrics["images_per_s"].median()), 1) if "images_per_s" in metrics else None)
        best = best_epoch_row(metrics)
        if best is not None:
            row.update(best_acc=round(float(best["val_acc"]), 4), best_epoch=int(best["epoch"]),
                       macro_f1=round(float(best["val_f1"]), 4) if "val_f1" in metrics else None)
    status = run_status(run_dir, epochs_done, row["epochs_planned"])
    row["status"] = status if not problems or status == "running" else f"{status}: {'; '.join(problems)}"
    return row


def _looks_like_run(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).exists() for name in ("config.json", "metrics.csv", "status.json", "last.pt"))


def list_runs(weights_root: Path | None = None, sort: str | None = None, descending: bool = False) -> pd.DataFrame:
    """The runs table (COLUMNS), oldest first, or by the column `sort` names."""
    weights_root = weights_root or weights_dir()
    if sort is not None and sort not in COLUMNS:
        raise PipelineError(f"--sort {sort!r}: choose one of {', '.join(COLUMNS)}")
    folders = sorted(f for f in weights_root.iterdir() if _looks_like_run(f)) if weights_root.is_dir() else []
    table = pd.DataFrame([describe_run(f) for f in folders], columns=list(COLUMNS))
    for column in NUMERIC:
        table[column] = pd.to_numeric(table[column])
    table = table.sort_values("date", na_position="last", kind="stable")  # ties in `sort` stay oldest first
    if sort is not None:
        table = table.sort_values(sort, ascending=not descending, na_position="last", kind="stable")
    return table.reset_index(drop=True)


def resolve_run(name: Path, weights_root: Path | None = None) -> Path:
    """A run given as a folder path or as its name under weights/."""
    if name.is_dir():
        return name
    candidate = (weights_root or weights_dir()) / name
    if candidate.is_dir():
        return candidate
    raise PipelineError(f"{name}: no such run (neither a folder nor a run under {weights_root or weights_dir()})")


def _flatten(options: dict) -> dict:
    return {key: json.dumps(value) if isinstance(value, (list, dict)) else value for key, value in options.items()}


def compare_runs(runs: list[Path], output: Path | None = None, weights_root: Path | None = None) -> tuple[Path, pd.DataFrame]:
    """Overlay the runs' curves in one figure; return its path and a table of what differs between them."""
    if len(runs) < 2:
        raise PipelineError("compare needs at least two runs")
    folders = [resolve_run(run, weights_root) for run in runs]
    names = [folder.name for folder in folders]
    if len(set(names)) < len(names):
        names = [str(folder) for folder in folders]
    configs = [read_run_config(folder) for folder in folders]
    metrics = [read_metrics(folder) for folder in folders]

    figure = Figure(figsize=(12, 8.5), layout="constrained")
    axes = figure.subplots(2, 2, sharex=True)
    panels = (("val", "acc", "accuracy"), ("val", "loss", "loss"), ("train", "acc", "accuracy"), ("train", "loss", "loss"))
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
    output = output or (weights_root or weights_dir()) / "compare.png"
    save_figure(figure, output)

    options = [_flatten(config["options"]) for config in configs]
    keys = [key for key in options[0] if key != "name"]
    keys += [key for opts in options[1:] for key in opts if key not in keys and key != "name"]
    differing = [key for key in keys if len({json.dumps(opts.get(key)) for opts in options}) > 1]
    table = pd.DataFrame({name: [opts.get(key) for key in differing] for name, opts in zip(names, options)}, index=differing)
    best = [best_epoch_row(m) for m in metrics]
    for label, values in (("best val acc", [None if b is None else round(float(b["val_acc"]), 4) for b in best]),
                          ("best epoch", [None if b is None else int(b["epoch"]) for b in best]),
                          ("epochs trained", [int(m["epoch"].max()) for m in metrics]),
                          ("wall s", [round(float(m["wall_s"].iloc[-1]), 1) if "wall_s" in m else None for m in metrics])):
        table.loc[label] = values
    return output, table

