"""The options of a training run (no heavy imports: the CLI reads its defaults from here)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from pipeline.errors import PipelineError

# Options that may change when a run is resumed; the others define the run.
RESUME_OVERRIDES = frozenset({"epochs", "device", "workers"})


@dataclass
class TrainConfig:
    """Every `pipeline train` option, with seed 004's defaults."""

    model: str = "custom"
    stem: str = "imagenet"
    pretrained: str | None = None
    epochs: int = 100
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    seed: int = 42
    val_fraction: float = 0.2
    device: str = "auto"
    limit: int | None = None
    workers: int = min(4, os.cpu_count() or 1)
    name: str | None = None

    def validate(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}
        if self.limit is not None:
            positive["limit"] = self.limit
        for option, value in positive.items():
            if value <= 0:
                raise PipelineError(f"--{option.replace('_', '-')} must be positive, got {value}")
        if self.workers < 0:
            raise PipelineError(f"--workers must be 0 or more, got {self.workers}")
        if sorted(set(self.milestones)) != list(self.milestones) or any(m <= 0 for m in self.milestones):
            raise PipelineError(f"--milestones must be increasing positive epochs, got {self.milestones}")
