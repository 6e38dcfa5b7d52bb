"""`pipeline predict`: a trained run's TTA predictions over dataset/test, as submissions/submission.csv."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline.dataset import PngDataset, eval_transform
from pipeline.layout import SAMPLE_SUBMISSION, check_test, id_sort_key
from pipeline.errors import PipelineError
from pipeline.models import build_model
from pipeline.submission import class_histogram, score_submission, write_submission
from pipeline.config import TrainConfig
from pipeline.train import inference_weights, load_checkpoint, resolve_device
from pipeline.workspace import dataset_dir, submissions_dir, weights_dir

TTA_VIEWS = {
    "none": (lambda x: x,),
    "flip": (lambda x: x, lambda x: torch.flip(x, dims=[3])),
}


@dataclass(frozen=True)
class PredictResult:
    submission: Path
    checkpoint: Path
    rows: int
    histogram: list[tuple[str, int]]
    accuracy: float | None  # on --score's solution ids, when given


def find_checkpoint(run: Path | None = None, checkpoint: Path | None = None, weights_root: Path | None = None) -> Path:
    """`--checkpoint`, else `--run`'s best.pt, else the best.pt written most recently under weights/."""
    if checkpoint is not None:
        return checkpoint
    if run is not None:
        if not (run / "best.pt").is_file():
            raise PipelineError(f"{run}: no best.pt; train it with `pipeline train` first")
        return run / "best.pt"
    weights_root = weights_root or weights_dir()
    candidates = list(weights_root.glob("*/best.pt")) if weights_root.is_dir() else []
    if not candidates:
        raise PipelineError(f"{weights_root}: no trained run (no */best.pt); run `pipeline train` first")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def load_model(path: Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The model of a pipeline checkpoint, in eval mode, and the run's config."""
    checkpoint = load_checkpoint(path)
    config = checkpoint["config"]
    options = TrainConfig(**config["options"])
    model = build_model(options.model, len(config["classes"]), options.stem)
    try:
        model.load_state_dict(inference_weights(checkpoint))
    except RuntimeError as e:
        raise PipelineError(f"{path}: weights do not fit its configured model ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), config


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, loader: torch.utils.data.DataLoader, tta: str,
                          device: torch.device, console: Console) -> np.ndarray:
    """Softmax probabilities (N, classes), averaged over the TTA views, in the loader's order."""
    views = TTA_VIEWS[tta]
    batches = []
    columns = (TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("predict", total=len(loader.dataset))
        for images, _ in loader:
            images = images.to(device, non_blocking=True)
            probs = sum(torch.softmax(model(view(images)), dim=1) for view in views) / len(views)
            batches.append(probs.float().cpu())
            progress.advance(task, len(images))
    return torch.cat(batches).numpy()


def predict(run: Path | None = None, checkpoint: Path | None = None, tta: str = "flip", batch_size: int = 256,
            workers: int = TrainConfig.workers, device: str = "auto", score: Path | None = None,
            dataset_root: Path | None = None, weights_root: Path | None = None, out: Path | None = None,
            console: Console | None = None) -> PredictResult:
    if tta not in TTA_VIEWS:
        raise PipelineError(f"--tta {tta!r}: choose one of {', '.join(TTA_VIEWS)}")
    if batch_size <= 0:
        raise PipelineError(f"--batch-size must be positive, got {batch_size}")
    console = console or Console()
    dataset_root = dataset_root or dataset_dir()
    out = out or submissions_dir() / "submission.csv"
    target = resolve_device(device)
    path = find_checkpoint(run, checkpoint, weights_root)
    model, config = load_model(path, target)
    submission_ids = check_test(dataset_root)
    ids = sorted(submission_ids, key=id_sort_key)
    test_set = PngDataset(dataset_root / "test", ids, None, eval_transform(config["mean"], config["std"]))
    loader = torch.utils.data.DataLoader(test_set, batch_size=batch_size, num_workers=workers,
                                         pin_memory=target.type == "cuda")
    console.print(f"predicting {len(ids)} test images with {path} ({tta} TTA) on {target}")
    probabilities = predict_probabilities(model, loader, tta, target, console)
    classes = config["classes"]
    label_of = dict(zip(ids, (classes[i] for i in probabilities.argmax(1))))
    labels = [label_of[i] for i in submission_ids]
    write_submission(out, submission_ids, labels, dataset_root / SAMPLE_SUBMISSION, classes)
    accuracy = score_submission(out, score)[0] if score is not None else None
    return PredictResult(out, path, len(ids), class_histogram(labels, classes), accuracy)
