"""`pipeline report`: the pictures and tables of one run, from its `metrics.csv` and `best.pt`.

Writes into the run folder `curves.png` (loss and accuracy per epoch, lr on a second axis),
`confusion.png` (val confusion matrix: counts and row-normalised), `per_class.csv` (precision, recall,
F1, support and accuracy per class) and `report.md`, which embeds them with the config and headline
numbers. `pipeline train` calls it when a run ends; `pipeline report RUN` redraws an old run.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure  # figures without pyplot: no window, no global state
from rich.console import Console
from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix, precision_recall_fscore_support

from pipeline.config import saved_config
from pipeline.dataset import run_split, training_arrays
from pipeline.errors import PipelineError
from pipeline.predict import load_model, predict_probabilities
from pipeline.runtime import autocast_dtype, resolve_device
from pipeline.workspace import atomic_path, dataset_dir, write_text_atomic

REPORT_FILES = ("curves.png", "confusion.png", "per_class.csv", "report.md")


@dataclass(frozen=True)
class ValPredictions:
    classes: list[str]
    actual: np.ndarray  # class index per val image
    predicted: np.ndarray


def read_run_config(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    if not path.is_file():
        raise PipelineError(f"{path}: not found (not a run folder)")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PipelineError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or not {"options", "classes"} <= config.keys():
        raise PipelineError(f"{path}: not a pipeline run config (no options/classes)")
    return config


def read_metrics(run_dir: Path) -> pd.DataFrame:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        raise PipelineError(f"{path}: no metrics (the run has not finished an epoch)")
    try:
        metrics = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise PipelineError(f"{path}: not a metrics CSV ({str(e).splitlines()[0]})") from None
    missing = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"} - set(metrics.columns)
    if missing or metrics.empty:
        raise PipelineError(f"{path}: " + (f"missing columns {', '.join(sorted(missing))}" if missing else "no epochs"))
    return metrics


def best_epoch_row(metrics: pd.DataFrame) -> pd.Series | None:
    """The metrics of the epoch with the best val accuracy (None without validation)."""
    if not metrics["val_acc"].notna().any():
        return None
    return metrics.loc[metrics["val_acc"].idxmax()]


def val_predictions(checkpoint: Path, dataset_root: Path, device: torch.device, console: Console) -> ValPredictions | None:
    """The checkpoint's predictions on its run's val split, rebuilt from the run's seed (None for --full runs)."""
    model, config = load_model(checkpoint, device)
    options = saved_config(config["options"], checkpoint)
    if options.full:
        return None
    data = training_arrays(dataset_root, options.skip_bad, options.limit, console)
    if data.classes != config["classes"]:
        raise PipelineError(f"{dataset_root}: its classes differ from those {checkpoint} was trained on")
    images, targets = data.images, data.targets
    _, val_idx = run_split(targets, options.val_fraction, options.seed, full=False)
    probs = predict_probabilities(model, images[val_idx], config["mean"], config["std"], "none", device, 256,
                                  console, autocast_dtype(options.precision, device), options.img_size)
    return ValPredictions(config["classes"], targets[val_idx], probs.argmax(1))


def per_class_table(predictions: ValPredictions) -> pd.DataFrame:
    """Precision, recall, F1, support and accuracy (correct / images of that class, as in users' reports)."""
    labels = list(range(len(predictions.classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        predictions.actual, predictions.predicted, labels=labels, zero_division=0)
    correct = np.bincount(predictions.actual[predictions.actual == predictions.predicted], minlength=len(labels))
    accuracy = np.divide(correct, support, out=np.zeros(len(labels)), where=support > 0)
    return pd.DataFrame({"class": predictions.classes, "precision": precision, "recall": recall, "f1": f1,
                         "support": support, "accuracy": accuracy}).round(4)


def save_figure(figure: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def log_scale_if_wide(ax, values: np.ndarray) -> None:
    """Log scale for losses that span more than 20×, so a diverged epoch does not flatten the rest."""
    values = np.asarray(values, dtype=float).ravel()
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) and values.max() > 20 * values.min():
        ax.set_yscale("log")


def plot_curves(metrics: pd.DataFrame, title: str, path: Path) -> None:
    figure = Figure(figsize=(12, 4.6), layout="constrained")
    loss_ax, acc_ax = figure.subplots(1, 2)
    marker = "o" if len(metrics) <= 30 else None
    best = best_epoch_row(metrics)
    for ax, key, label in ((loss_ax, "loss", "Loss (cross-entropy)"), (acc_ax, "acc", "Accuracy")):
        ax.plot(metrics["epoch"], metrics[f"train_{key}"], marker=marker, ms=3, label="train")
        if best is not None:
            ax.plot(metrics["epoch"], metrics[f"val_{key}"], marker=marker, ms=3, label="val")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
    log_scale_if_wide(loss_ax, metrics[["train_loss", "val_loss"]].to_numpy())
    if best is not None:
        acc_ax.plot(best["epoch"], best["val_acc"], "*", color="black", ms=11, label="best val")
        acc_ax.set_title(f"Accuracy (best val {best['val_acc']:.4f} at epoch {int(best['epoch'])})")
    lr_ax = acc_ax.twinx()
    lr_ax.plot(metrics["epoch"], metrics["lr"], color="grey", ls="--", lw=1, drawstyle="steps-post", label="lr (right axis)")
    lr_ax.set_ylabel("learning rate")
    if metrics["lr"].max() > 10 * metrics["lr"].min() > 0:
        lr_ax.set_yscale("log")
    handles = acc_ax.get_legend_handles_labels()[0] + lr_ax.get_legend_handles_labels()[0]
    for ax, shown in ((loss_ax, loss_ax.get_legend_handles_labels()[0]), (acc_ax, handles)):
        ax.legend(shown, [h.get_label() for h in shown], loc="upper center", bbox_to_anchor=(0.5, -0.13),
                  ncol=len(shown), frameon=False)
        ax.xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(title)
    save_figure(figure, path)


def plot_confusion(predictions: ValPredictions, title: str, path: Path) -> np.ndarray:
    """Draw the counts and the row-normalised matrix side by side; returns the counts (true × predicted)."""
    k = len(predictions.classes)
    labels = list(range(k))
    counts = confusion_matrix(predictions.actual, predictions.predicted, labels=labels)
    rows = counts.sum(1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    side = min(max(5.0, 0.55 * k + 2.5), 8.0 + 0.2 * k, 16.0)  # inches per matrix
    figure = Figure(figsize=(2 * side + 1.5, side), layout="constrained")
    axes = figure.subplots(1, 2)
    show_values = k <= 20
    font = 10 if k <= 12 else 8 if k <= 25 else 7 if k <= 50 else 5
    for ax, matrix, fmt, name in ((axes[0], counts, "d", "counts"), (axes[1], normalised, ".2f", "row-normalised (recall on the diagonal)")):
        display = ConfusionMatrixDisplay(matrix, display_labels=predictions.classes)
        display.plot(ax=ax, cmap="Blues", values_format=fmt, include_values=show_values, xticks_rotation=45,
                     colorbar=True, text_kw={"fontsize": font})
        ax.set_title(name)
        ax.tick_params(labelsize=font)
        for label in ax.get_xticklabels():
            label.set(ha="right", rotation_mode="anchor")
    accuracy = float((predictions.actual == predictions.predicted).mean())
    figure.suptitle(f"{title}: validation confusion matrix, {len(predictions.actual)} images, accuracy {accuracy:.4f}")
    save_figure(figure, path)
    return counts


def _markdown_table(frame: pd.DataFrame) -> str:
    cells = [[str(v) for v in frame.columns]] + [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
                                                 for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "---|" * len(frame.columns))
    return "\n".join(lines)


def report_markdown(run_dir: Path, config: dict, metrics: pd.DataFrame, per_class: pd.DataFrame | None) -> str:
    options = asdict(saved_config(config["options"], run_dir / "config.json"))
    split = config.get("split", {})
    last = metrics.iloc[-1]
    wall = last["wall_s"] if "wall_s" in metrics else metrics["seconds"].sum() if "seconds" in metrics else float("nan")
    speed = metrics["images_per_s"].median() if "images_per_s" in metrics else float("nan")
    lines = [f"# Run `{run_dir.name}`", ""]
    best = best_epoch_row(metrics)
    if per_class is not None and best is not None:
        lines += [f"- **best val accuracy {best['val_acc']:.4f}** at epoch {int(best['epoch'])} of {int(last['epoch'])} "
                  f"(macro-F1 {best.get('val_f1', float('nan')):.4f}, val loss {best['val_loss']:.4f})",
                  f"- val split: {split.get('val_images', '?')} images (seed {options['seed']}), "
                  f"train: {split.get('train_images', '?')}"]
    else:
        lines += [f"- trained on all {split.get('train_images', '?')} labeled images (--full, no validation)"]
    lines += [f"- {options['model']} ({options['stem']} stem), recipe {options['recipe']}, "
              f"{'pretrained ' + options['pretrained'] if options['pretrained'] else 'from scratch'}",
              f"- wall time {wall:.1f} s, {speed:.0f} train images/s (median), "
              f"on {config.get('device', '?')} ({config.get('precision', 'fp32')})",
              f"- created {config.get('created', '?')}", "", "## Curves", "", "![curves](curves.png)", ""]
    if per_class is not None:
        lines += ["## Confusion matrix (val)", "", "![confusion](confusion.png)", "",
                  "## Per class (val)", "", _markdown_table(per_class), ""]
    option_rows = pd.DataFrame({"option": list(options), "value": [json.dumps(v) for v in options.values()]})
    lines += ["## Config", "", _markdown_table(option_rows), "",
              f"classes: {', '.join(config['classes'])}  ",
              "versions: " + ", ".join(f"{k} {v}" for k, v in config.get("versions", {}).items()), ""]
    return "\n".join(lines)


def write_report(run_dir: Path, dataset_root: Path | None = None, device: str = "auto",
                 console: Console | None = None) -> list[Path]:
    """Draw the run's pictures and tables from metrics.csv and best.pt; returns the files written."""
    console = console or Console()
    if not run_dir.is_dir():
        raise PipelineError(f"{run_dir}: no such run folder")
    config = read_run_config(run_dir)
    metrics = read_metrics(run_dir)
    checkpoint = run_dir / "best.pt"
    if not checkpoint.is_file():
        raise PipelineError(f"{checkpoint}: not found (the run has not finished an epoch)")
    predictions = val_predictions(checkpoint, dataset_root or dataset_dir(), resolve_device(device), console)
    options = saved_config(config["options"], run_dir / "config.json")
    title = f"{run_dir.name}: {options.model} ({options.stem} stem)"
    written = [run_dir / "curves.png"]
    plot_curves(metrics, title, written[0])
    per_class = None
    if predictions is not None:
        plot_confusion(predictions, run_dir.name, run_dir / "confusion.png")
        per_class = per_class_table(predictions)
        with atomic_path(run_dir / "per_class.csv") as tmp:
            per_class.to_csv(tmp, index=False)
        written += [run_dir / "confusion.png", run_dir / "per_class.csv"]
    write_text_atomic(run_dir / "report.md", report_markdown(run_dir, config, metrics, per_class))
    return written + [run_dir / "report.md"]
