"""The pictures and tables of a run, drawn from its metrics and its val predictions: `curves.png` (loss and
accuracy per epoch, lr on a second axis, and the run's metric where it is not accuracy), `confusion.png` (val
confusion matrix: counts and row-normalised), `per_class.csv` (precision, recall, F1, support, accuracy and, from
the probabilities, ROC AUC per class) and `report.md`, which embeds them with the config and headline numbers. Training draws them when a run ends; `pipeline report` redraws them."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # figures without pyplot: no window, no global state
from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix, precision_recall_fscore_support

from pipeline.config import model_label
from pipeline.dataset import TrainArrays
from pipeline.errors import listed
from pipeline.metrics import METRIC_LABELS, class_roc_aucs
from pipeline.run import Run, RunConfig, summarize_metrics
from pipeline.workspace import atomic_path, write_text_atomic


# (images uint8 (N, H, W, C), a class per image) → Grad-CAM maps (N, H, W) in [0, 1], or None for a model it
# does not explain (report.explainer)
Explain = Callable[[np.ndarray, np.ndarray], "np.ndarray | None"]


@dataclass(frozen=True)
class ValPredictions:
    classes: list[str]
    actual: np.ndarray  # class index per val image
    predicted: np.ndarray
    probabilities: np.ndarray | None = None  # (val images, classes)
    indices: np.ndarray | None = None  # each val image's index in the labeled set


def per_class_table(predictions: ValPredictions) -> pd.DataFrame:
    """Precision, recall, F1, support and accuracy (correct / images of that class, as in users' reports); with
    probabilities, the ROC AUC of the class against the rest (the columns that mean column-wise ROC AUC averages)."""
    labels = list(range(len(predictions.classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        predictions.actual, predictions.predicted, labels=labels, zero_division=0)
    correct = np.bincount(predictions.actual[predictions.actual == predictions.predicted], minlength=len(labels))
    accuracy = np.divide(correct, support, out=np.zeros(len(labels)), where=support > 0)
    table = pd.DataFrame({"class": predictions.classes, "precision": precision, "recall": recall, "f1": f1,
                          "support": support, "accuracy": accuracy})
    if predictions.probabilities is not None:  # blank where val holds none of the class, or only it
        table["roc_auc"] = class_roc_aucs(predictions.actual, predictions.probabilities)
    return table.round(4)


def save_figure(figure: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def log_scale_if_wide(ax, values: np.ndarray) -> None:
    """Log scale for losses that span more than 20×, so a diverged epoch does not flatten the rest."""
    values = np.asarray(values, dtype=float).ravel()
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) and values.max() > 20 * values.min():
        ax.set_yscale("log")


def plot_curves(metrics: pd.DataFrame, title: str, path: Path, metric: str = "accuracy") -> None:
    """Loss and accuracy per epoch (lr on a second axis), and the val score of the run's `metric` where it is not
    accuracy; the best epoch starred."""
    own_panel = metric != "accuracy" and "val_score" in metrics and metrics["val_score"].notna().any()
    figure = Figure(figsize=(18 if own_panel else 12, 4.6), layout="constrained")
    loss_ax, acc_ax, *score_ax = figure.subplots(1, 3 if own_panel else 2)
    marker = "o" if len(metrics) <= 30 else None
    summary = summarize_metrics(metrics, metric)
    has_val = summary.best_score is not None
    for ax, key, label in ((loss_ax, "loss", "Loss (cross-entropy)"), (acc_ax, "acc", "Accuracy")):
        ax.plot(metrics["epoch"], metrics[f"train_{key}"], marker=marker, ms=3, label="train")
        if has_val:
            ax.plot(metrics["epoch"], metrics[f"val_{key}"], marker=marker, ms=3, label="val")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
    log_scale_if_wide(loss_ax, metrics[["train_loss", "val_loss"]].to_numpy())
    best_ax = score_ax[0] if own_panel else acc_ax
    if own_panel:
        best_ax.plot(metrics["epoch"], metrics["val_score"], marker=marker, ms=3, color="tab:orange", label="val")
        best_ax.set(xlabel="epoch", ylabel=METRIC_LABELS[metric])
        best_ax.grid(alpha=0.3)
    if has_val:
        best_ax.plot(summary.best_epoch, summary.best_score, "*", color="black", ms=11, label="best val")
        best_ax.set_title(f"{METRIC_LABELS[metric][0].upper()}{METRIC_LABELS[metric][1:]} (best val {summary.best_score:.4f} at epoch "
                          f"{summary.best_epoch})")
    lr_ax = acc_ax.twinx()
    lr_ax.plot(metrics["epoch"], metrics["lr"], color="grey", ls="--", lw=1, drawstyle="steps-post", label="lr (right axis)")
    lr_ax.set_ylabel("learning rate")
    if metrics["lr"].max() > 10 * metrics["lr"].min() > 0:
        lr_ax.set_yscale("log")
    handles = acc_ax.get_legend_handles_labels()[0] + lr_ax.get_legend_handles_labels()[0]
    for ax, shown in ((loss_ax, loss_ax.get_legend_handles_labels()[0]), (acc_ax, handles),
                      *((ax, ax.get_legend_handles_labels()[0]) for ax in score_ax)):
        ax.legend(shown, [h.get_label() for h in shown], loc="upper center", bbox_to_anchor=(0.5, -0.13),
                  ncol=len(shown), frameon=False)
        ax.xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(title)
    save_figure(figure, path)


def plot_lr_curve(rates: np.ndarray, losses: np.ndarray, suggested: float, path: Path) -> None:
    """`pipeline lr-find`'s curve: smoothed training loss against the learning rate (log scale), the suggestion marked."""
    figure = Figure(figsize=(6, 4))
    ax = figure.subplots()
    ax.plot(rates, losses)
    ax.axvline(suggested, color="tab:red", linestyle="--", label=f"suggested --lr {suggested:.3g}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="smoothed training loss", title="learning-rate range test")
    ax.legend()
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


def confused_pairs(counts: np.ndarray, classes: list[str], top: int = 10) -> pd.DataFrame:
    """The `top` off-diagonal cells of a confusion matrix (true × predicted), most images first: each pair's count
    and its share of the true class's val images."""
    off = counts.copy()
    np.fill_diagonal(off, 0)
    rows, columns = np.unravel_index(np.argsort(-off, axis=None, kind="stable"), off.shape)
    support = counts.sum(1)
    pairs = [(classes[t], classes[p], int(off[t, p]), round(off[t, p] / support[t], 4))
             for t, p in zip(rows, columns) if off[t, p] > 0][:top]
    return pd.DataFrame(pairs, columns=["true", "predicted", "images", "share_of_true"])


def highest_losses(predictions: ValPredictions, count: int) -> np.ndarray:
    """Positions (in the val predictions) of the `count` images of highest loss, -log p(true class), highest first."""
    true_probability = predictions.probabilities[np.arange(len(predictions.actual)), predictions.actual]
    return np.argsort(true_probability, kind="stable")[:count]


def plot_gallery(images: list[np.ndarray], captions: list[str], title: str, path: Path,
                 overlays: np.ndarray | None = None) -> None:
    """Images in a grid of up to 6 columns, each with its caption (one-channel images in grey), and over each its
    map in `overlays` (values in [0, 1]), when given, as a translucent heat map."""
    columns = min(6, len(images))
    rows = -(-len(images) // columns)
    figure = Figure(figsize=(2.3 * columns, 2.5 * rows), layout="constrained")
    for k, (image, caption) in enumerate(zip(images, captions)):
        ax = figure.add_subplot(rows, columns, k + 1)
        grey = image.shape[-1] == 1
        ax.imshow(image.squeeze(-1) if grey else image, cmap="gray" if grey else None)
        if overlays is not None:
            ax.imshow(overlays[k], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(caption, fontsize=8)
        ax.axis("off")
    figure.suptitle(title)
    save_figure(figure, path)


def plot_top_losses(predictions: ValPredictions, images: np.ndarray, title: str, path: Path, count: int = 24) -> None:
    """A gallery of the val images of highest loss (`images`: the labeled set's, indexed by `predictions.indices`),
    each titled with its true class, the predicted one and the probabilities the model gave both."""
    chosen = highest_losses(predictions, count)
    captions = []
    for position in chosen:
        true, guess, p = predictions.actual[position], predictions.predicted[position], predictions.probabilities[position]
        captions.append(f"true {predictions.classes[true]} {p[true]:.2f}\npred {predictions.classes[guess]} {p[guess]:.2f}")
    plot_gallery([images[predictions.indices[k]] for k in chosen], captions,
                 f"{title}: the {len(chosen)} val images of highest loss", path)


def plot_error_cams(predictions: ValPredictions, images: np.ndarray, explain: Explain, title: str, path: Path,
                    count: int = 12) -> bool:
    """Grad-CAM maps of the model's predicted class over the `count` val images of highest loss: where it looked
    when it was wrong. False (nothing drawn) where `explain` cannot explain this model."""
    chosen = highest_losses(predictions, count)
    shown = np.stack([images[predictions.indices[k]] for k in chosen])
    maps = explain(shown, predictions.predicted[chosen])
    if maps is None:
        return False
    captions = [f"true {predictions.classes[predictions.actual[k]]}\nlooked for {predictions.classes[predictions.predicted[k]]}"
                for k in chosen]
    plot_gallery(list(shown), captions, f"{title}: Grad-CAM of the predicted class, highest-loss val images", path, maps)
    return True


def label_issues(predictions: ValPredictions, ids: list[str]) -> pd.DataFrame | None:
    """Held-out images whose given label is likely wrong, by confident learning (cleanlab's `find_label_issues` on
    the probabilities of a model that did not train on them), most suspect first; `ids` are the labeled set's,
    which `predictions.indices` index. None where it cannot tell: cleanlab not installed, or a class with fewer
    than 2 held-out images."""
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        return None
    if predictions.probabilities is None or \
            np.bincount(predictions.actual, minlength=len(predictions.classes)).min() < 2:
        return None
    found = find_label_issues(predictions.actual, predictions.probabilities, return_indices_ranked_by="self_confidence",
                              n_jobs=1)  # its worker pool loses its globals in spawned processes (torchrun's)
    p, given = predictions.probabilities[found], predictions.actual[found]
    suggested = p.argmax(1)
    return pd.DataFrame({"id": [ids[predictions.indices[k]] for k in found],
                         "given": [predictions.classes[c] for c in given],
                         "suggested": [predictions.classes[c] for c in suggested],
                         "given_probability": p[np.arange(len(found)), given].round(4),
                         "suggested_probability": p[np.arange(len(found)), suggested].round(4)})


def _markdown_table(frame: pd.DataFrame) -> str:
    cells = [[str(v) for v in frame.columns]] + [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
                                                 for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "---|" * len(frame.columns))
    return "\n".join(lines)


def _of_planned(trained: int, planned: int) -> str:
    """A run that stopped before its last planned epoch (interrupted, failed, early-stopped) says so."""
    return f" trained, {planned} planned" if trained < planned else ""


def report_markdown(run: Run, config: RunConfig, metrics: pd.DataFrame, per_class: pd.DataFrame | None,
                    pairs: pd.DataFrame | None = None, issues: pd.DataFrame | None = None) -> str:
    options, split, summary = asdict(config.options), config.split, summarize_metrics(metrics, config.metric)
    nan = float("nan")
    lines = [f"# Run `{run.name}`", ""]
    averaged = run.averaged() if per_class is not None else None
    if averaged:
        lines += [f"- **best.pt: the average of the {len(averaged[0])} best epochs ({', '.join(map(str, averaged[0]))}): "
                  f"val {METRIC_LABELS[summary.metric]} {averaged[1]:.4f}** (--average-top; the tables below are its)"]
    if per_class is not None and summary.best_score is not None:
        accuracy = f"accuracy {summary.val_acc:.4f}, " if summary.metric != "accuracy" else ""
        lines += [f"- {'' if averaged else '**'}best val {METRIC_LABELS[summary.metric]} {summary.best_score:.4f}"
                  f"{' of a single epoch' if averaged else '**'} at epoch "
                  f"{summary.best_epoch} of {summary.epochs}{_of_planned(summary.epochs, options['epochs'])} ({accuracy}"
                  f"macro-F1 {summary.val_f1 if summary.val_f1 is not None else nan:.4f}, "
                  f"val loss {summary.val_loss:.4f})",
                  f"- val split: {split.get('val_images', '?')} images (seed {options['seed']}), "
                  f"train: {split.get('train_images', '?')}"]
        lines += [f"- **its val scores may flatter it: {split['val_leak']}**"] if split.get("val_leak") else []
    else:
        lines += [f"- trained on all {split.get('train_images', '?')} labeled images (--full, no validation)"]
    wall = summary.wall_s if summary.wall_s is not None else nan
    speed = summary.images_per_s if summary.images_per_s is not None else nan
    lines += [f"- {model_label(options['model'], options['stem'])}, recipe {options['recipe']}, "
              f"{'pretrained ' + options['pretrained'] if options['pretrained'] else 'from scratch'}",
              f"- wall time {wall:.1f} s, {speed:.0f} train images/s (median), "
              f"on {config.device or '?'} ({config.precision})",
              f"- created {config.created or '?'}", "", "## Curves", "", f"![curves]({run.curves.name})", ""]
    if per_class is not None:
        lines += ["## Confusion matrix (val)", "", f"![confusion]({run.confusion.name})", "",
                  "## Per class (val)", "", _markdown_table(per_class), ""]
    if pairs is not None:
        lines += ["## Most confused pairs (val)", "", _markdown_table(pairs) if len(pairs) else "no val image was "
                  "misclassified", ""]
    if run.top_losses.is_file():
        lines += ["## Highest-loss val images", "", f"![top losses]({run.top_losses.name})", ""]
    if run.error_cams.is_file():
        lines += ["## Where the model looked when it was wrong (Grad-CAM of the predicted class)", "",
                  f"![Grad-CAM]({run.error_cams.name})", ""]
    if issues is not None:
        lines += ["## Likely mislabeled (val)", "", f"{len(issues)} of {split.get('val_images', '?')} val labels are "
                  f"likely wrong by confident learning (cleanlab, on the held-out probabilities of `best.pt`; "
                  f"[{run.label_issues.name}]({run.label_issues.name}))", ""]
        if len(issues):
            lines += [_markdown_table(issues.head(10)), "", f"![label issues]({run.label_issue_images.name})", ""]
    option_rows = pd.DataFrame({"option": list(options), "value": [json.dumps(v) for v in options.values()]})
    lines += ["## Config", "", _markdown_table(option_rows), "",
              f"classes: {listed(config.classes)}  ",
              "versions: " + ", ".join(f"{k} {v}" for k, v in config.versions.items()), ""]
    return "\n".join(lines)


def draw_report(run: Run, predictions: ValPredictions | None, labeled: TrainArrays | None = None,
                explain: Explain | None = None) -> list[Path]:
    """Draw the run's pictures and tables from its metrics and `predictions` (of its best checkpoint on the val split;
    None for --full runs), with the error analysis that needs the images and ids of `labeled` (the labeled set,
    which `predictions.indices` index) and, with `explain`, Grad-CAM maps of the worst errors; returns the files
    written."""
    config = run.read_config()
    metrics = run.read_metrics()
    options = config.options
    plot_curves(metrics, f"{run.name}: {model_label(options.model, options.stem)}", run.curves, config.metric)
    written = [run.curves]
    per_class = pairs = issues = None
    if predictions is not None:
        counts = plot_confusion(predictions, run.name, run.confusion)
        per_class, pairs = per_class_table(predictions), confused_pairs(counts, predictions.classes)
        written += [run.confusion, run.per_class, run.confused_pairs]
        if labeled is not None and predictions.probabilities is not None and predictions.indices is not None:
            plot_top_losses(predictions, labeled.images, run.name, run.top_losses)
            written.append(run.top_losses)
            run.error_cams.unlink(missing_ok=True)  # an earlier report's
            if explain is not None and plot_error_cams(predictions, labeled.images, explain, run.name, run.error_cams):
                written.append(run.error_cams)
            issues = label_issues(predictions, labeled.ids)
        for table, path in ((per_class, run.per_class), (pairs, run.confused_pairs), (issues, run.label_issues)):
            if table is not None:
                with atomic_path(path) as tmp:
                    table.to_csv(tmp, index=False)
        if issues is not None:
            written += [run.label_issues] + _plot_label_issues(issues, labeled, run)
    write_text_atomic(run.report, report_markdown(run, config, metrics, per_class, pairs, issues))
    return written + [run.report]


def _plot_label_issues(issues: pd.DataFrame, labeled: TrainArrays, run: Run, count: int = 24) -> list[Path]:
    """A gallery of the most suspect labels, when there are any: the files written."""
    run.label_issue_images.unlink(missing_ok=True)  # an earlier report's, of other issues
    if issues.empty:
        return []
    position = {image_id: k for k, image_id in enumerate(labeled.ids)}
    shown = issues.head(count)
    captions = [f"{row.id}\ngiven {row.given} {row.given_probability:.2f}\nlikely {row.suggested} "
                f"{row.suggested_probability:.2f}" for row in shown.itertuples()]
    plot_gallery([labeled.images[position[i]] for i in shown["id"]], captions,
                 f"{run.name}: {len(shown)} of the {len(issues)} val labels most likely wrong", run.label_issue_images)
    return [run.label_issue_images]
