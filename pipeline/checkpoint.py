"""Checkpoints: one dict (model, optimizer, scheduler, epoch, RNG state, config), written atomically and
loaded without running pickled code."""
from __future__ import annotations

from pathlib import Path

import torch

from pipeline.errors import PipelineError
from pipeline.models import safe_torch_load
from pipeline.workspace import atomic_path, write_failure


def save_checkpoint(path: Path, checkpoint: dict) -> None:
    with atomic_path(path) as tmp:
        try:
            torch.save(checkpoint, tmp)
        except RuntimeError as e:  # torch's writer reports a full disk as a RuntimeError
            raise write_failure(path, e) from None


def load_checkpoint(path: Path) -> dict:
    """A pipeline checkpoint, loaded without running any pickled code."""
    if not path.is_file():
        raise PipelineError(f"{path}: checkpoint not found")
    checkpoint = safe_torch_load(path)
    if not isinstance(checkpoint, dict) or not {"model", "config", "epoch"} <= checkpoint.keys():
        raise PipelineError(f"{path}: not a pipeline checkpoint (no model/config/epoch entries)")
    return checkpoint


def inference_weights(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The weights to predict with: the EMA of the weights when the run kept one, else the model's."""
    return checkpoint.get("ema") or checkpoint["model"]
