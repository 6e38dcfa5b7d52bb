"""`pipeline report RUN`: redraw a run's pictures and tables (pipeline/figures.py) from its metrics and the
predictions of its best checkpoint on its val split, rebuilt from the run's seed through `infer`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from pipeline.dataset import TrainArrays, check_decoded_size, run_split, training_arrays
from pipeline.errors import PipelineError
from pipeline.figures import ValPredictions, draw_report
from pipeline.infer import default_batch_size, explainer, infer, load_model
from pipeline.layout import class_difference
from pipeline.experiments import log_disagrees
from pipeline.run import CrossValidation, Run, RunConfig, summarize_metrics
from pipeline.runtime import resolve_runtime
from pipeline.workspace import dataset_dir


def val_predictions(run: Run, config: RunConfig, dataset_root: Path, device: str,
                    console: Console) -> tuple[ValPredictions, TrainArrays] | None:
    """The best checkpoint's predictions on the val split of the run (`config`: its saved config; None for
    --full runs), and the labeled set they index."""
    options = config.options
    if options.full:
        return None
    runtime = resolve_runtime(device, options.precision)
    model, _ = load_model(run.best_checkpoint(), runtime.device)
    data = training_arrays(dataset_root, options.skip_bad, options.limit, console)
    if data.classes != config.classes:
        raise PipelineError(f"{run.best}: {class_difference(config.classes, data.classes, dataset_root)}; redraw its "
                            "report where its competition is laid out in dataset/")
    check_decoded_size(config.image_size, data, dataset_root, run.path)
    if config.labeled_ids and data.labeled_ids != config.labeled_ids:
        raise PipelineError(f"{dataset_root}: its labeled images are not those {run.path} was trained on (images or "
                            "labels changed since), so its val split would be other images; restore them to redraw "
                            "the report (the files drawn when it trained are as they were)")
    _, val_idx = run_split(data.targets, options.val_fraction, options.seed, False, None, options.folds, options.fold)
    log_probs = infer(model, data.images[val_idx], config.inputs, "none", runtime,
                      default_batch_size(runtime.device), console, len(config.classes))
    return ValPredictions(config.classes, data.targets[val_idx], log_probs.argmax(1), np.exp(log_probs),
                          val_idx), data


def write_report(run_dir: Path, dataset_root: Path | None = None, device: str = "auto",
                 console: Console | None = None) -> list[Path]:
    """Redraw the run's report files; returns the files written."""
    if not run_dir.is_dir():
        raise PipelineError(f"{run_dir}: no such run folder")
    run = Run(run_dir)
    if not run.best.is_file() and CrossValidation(run_dir).is_cv():
        raise PipelineError(f"{run_dir}: a cross-validation; report one of its folds ({run_dir.name}/fold-I)")
    config = run.checked_config()
    metrics = run.read_metrics()  # before the long rebuild: a run without metrics is an error now
    disagreement = log_disagrees(run, metrics, summarize_metrics(metrics, config.metric))
    if disagreement:
        raise PipelineError(f"{run.path}: {disagreement}; restore it, so the report tells what the run did")
    if not run.best.is_file():
        raise PipelineError(f"{run.best}: not found (the run has not finished an epoch)")
    predicted = val_predictions(run, config, dataset_root or dataset_dir(), device, console or Console())
    return draw_report(run, *(predicted or (None, None)), explainer(run.best, resolve_runtime(device).device))
