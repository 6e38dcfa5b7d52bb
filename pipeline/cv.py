"""K-fold cross-validation: `pipeline train --folds K` trains a run per fold in one CV folder under weights/ (each
validated on its fold of a seeded stratified K-fold split); `--fold I` trains one fold alone, so folds can run on
separate machines and be gathered in one folder. Once every fold has finished, their out-of-fold (OOF) predictions
become the CV folder's oof.npz and its summary: per fold and OOF, the runs' metric, accuracy, macro-F1 and log loss,
mean ± std; and its label_issues.csv: the labeled images whose label is likely wrong, by confident learning over
every labeled image's out-of-fold probabilities."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console

from pipeline.competition import read_competition
from pipeline.config import OPTIONS_FORMAT, TrainConfig
from pipeline.errors import PipelineError
from pipeline.metrics import METRIC_LABELS
from pipeline.dataset import TrainArrays, training_arrays
from pipeline.figures import ValPredictions, label_issues
from pipeline.run import CrossValidation, Run, abandoned, claimed_cv, plan_differences, shared_options
from pipeline.teach import check_folds_unseen
from pipeline.train import train
from pipeline.workspace import atomic_path, dataset_dir, weights_dir


def cv_plan(config: TrainConfig) -> dict:
    """What every fold of a cross-validation shares: its options but where and how fast a fold runs."""
    return {**shared_options(config), "format": OPTIONS_FORMAT}


def train_cv(config: TrainConfig, dataset_root: Path | None = None, weights_root: Path | None = None,
             console: Console | None = None) -> tuple[CrossValidation, dict | None]:
    """Train the folds asked for (all, or --fold's) that the CV folder does not hold yet; return the folder and its
    summary once every fold has finished (None before)."""
    config.validate()
    console = console or Console()
    dataset_root = dataset_root or dataset_dir()
    config = replace(config, metric=config.metric or read_competition(dataset_root).metric)
    plan = cv_plan(config)
    folds = list(range(config.folds)) if config.fold is None else [config.fold]
    if config.teacher or config.pseudo or config.pretrained:
        check_folds_unseen(config, training_arrays(dataset_root, config.skip_bad, config.limit, console), folds)
    with claimed_cv(weights_root or weights_dir(), config.name, plan) as cv:
        labeled = None  # the digest of the labeled set now, once a trained fold is there to compare
        for fold in folds:
            run = cv.fold(fold)
            if run.looks_like_run() and not abandoned(run):  # one whose process died setting it up is trained anew
                problem = cv.fold_problem(fold, plan)
                if problem:
                    raise PipelineError(f"{problem}; then train the CV again to gather it")
                labeled = labeled or training_arrays(dataset_root, config.skip_bad, config.limit, console).labeled_ids
                check_same_images(run, fold, labeled, dataset_root)
                console.print(f"fold {fold}: already trained in {run.path}")
                continue
            check_plan_fits_folds(cv, plan)
            for index in cv.finished_fold_indices():  # a fold trained on other images would be refused once trained
                labeled = labeled or training_arrays(dataset_root, config.skip_bad, config.limit, console).labeled_ids
                check_same_images(cv.fold(index), index, labeled, dataset_root)
            console.print(f"[bold]fold {fold} of {config.folds}[/bold] → {run.path}")
            train(replace(config, fold=fold, name=run.name), dataset_root, cv.path, console)
    gathered = gather(cv)
    if gathered is None:
        done = cv.finished_folds()
        console.print(f"{cv.path}: {done} of {config.folds} folds finished; the out-of-fold summary comes once all have")
        return cv, None
    write_label_issues(cv, gathered[0], training_arrays(dataset_root, config.skip_bad, config.limit, console), console)
    return cv, gathered[1]


def check_same_images(run: Run, fold: int, labeled: str, dataset_root: Path) -> None:
    """A trained fold of the CV was trained on the labeled images `dataset_root` holds now (digest `labeled`)."""
    if run.read_config().labeled_ids not in ("", labeled):
        raise PipelineError(f"{run.path}: fold {fold} was trained on other labeled images than {dataset_root} holds now "
                            "(its labels or images changed since); train the CV again in a new folder")


def write_label_issues(cv: CrossValidation, predictions: tuple[np.ndarray, np.ndarray, np.ndarray], data: TrainArrays,
                       console: Console) -> None:
    """The CV's label_issues.csv: every labeled image's out-of-fold `predictions` through confident learning (a
    run alone sees only its val images; a CV sees them all). Said in a line; skipped where cleanlab cannot tell."""
    indices, targets, probabilities = predictions
    issues = label_issues(ValPredictions(data.classes, targets, probabilities.argmax(1), probabilities, indices),
                          data.ids)
    cv.label_issues.unlink(missing_ok=True)  # an earlier gathering's
    if issues is None:
        return
    with atomic_path(cv.label_issues) as tmp:
        issues.to_csv(tmp, index=False)
    console.print(f"{len(issues)} of {len(indices)} labels likely wrong (confident learning over the out-of-fold "
                  f"probabilities, most suspect first): {cv.label_issues}")


def check_plan_fits_folds(cv: CrossValidation, plan: dict) -> None:
    """A fold is trained only with the options the CV's finished folds were (a plan that lost an option to a hand
    edit would train it with the default, and the CV would then be refused)."""
    for index in range(plan["folds"]):
        run = cv.fold(index)
        if (run.read_status() or {}).get("state") != "finished":
            continue
        trained = shared_options(run.read_config().options)
        differ = plan_differences(plan, trained)
        if differ:
            key = differ[0]
            raise PipelineError(f"{run.path}: fold {index} was trained with --{key.replace('_', '-')} {trained[key]}, "
                                f"and this fold would be trained with {plan[key]} (does {cv.plan_file} lack {key}, or "
                                f"say otherwise?); train it with the options the folds share: restore {key} in "
                                f"{cv.plan_file.name}")


def gather(cv: CrossValidation) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict] | None:
    """The OOF predictions and summary of a CV whose folds have all finished (written into its folder), else None."""
    if cv.finished_folds() < cv.read_plan()["folds"]:
        return None
    predictions, summary = cv.gathered()
    cv.write_gathered(predictions, summary)
    return predictions, summary


def summary_lines(cv: CrossValidation, summary: dict) -> list[str]:
    """The summary in three lines: the runs' metric first, then accuracy, macro-F1 and log loss."""
    mean, std, oof, metric = summary["mean"], summary["std"], summary["oof"], summary["metric"]
    names = list(dict.fromkeys((metric, "accuracy", "f1_macro", "log_loss")))
    folds = ", ".join(f"{f[metric]:.4f}" for f in summary["per_fold"])
    per_fold = "; ".join(f"{METRIC_LABELS[name]} {mean[name]:.4f} ± {std[name]:.4f}" for name in names[1:])
    return [f"{cv.path}: {summary['folds']}-fold CV on {summary['images']} labeled images",
            f"fold {METRIC_LABELS[metric]} {mean[metric]:.4f} ± {std[metric]:.4f} ({folds}); {per_fold}",
            "out-of-fold: " + ", ".join(f"{METRIC_LABELS[name]} {oof[name]:.4f}" for name in names)
            + f" ({cv.oof}); predict with the fold ensemble: `pipeline predict --run {cv.name}`"]
