"""int8 CPU inference's helpers: the test images that calibrate static quantization (pipeline/engine.py), and
the fp32 re-check of near ties where int8 rounding can flip the argmax."""
from __future__ import annotations

import numpy as np
import torch

from pipeline.augment import resize
from pipeline.infer import infer, normalised_batch
from pipeline.run import ModelInputs
from pipeline.runtime import Runtime

# int8 predictions whose top two probabilities differ by less are redone in fp32: int8 rounding flips the argmax
# almost only on such near ties. OpenVINO int8 on a weak ResNet-18 (0.575 val), 4,096 test images: 5.7 % re-checked,
# argmax agreement with fp32 from 98.4 % to 99.8 % (benchmarks/engines_speed.py)
INT8_RECHECK_MARGIN = 0.02
CALIBRATION_IMAGES = 512


def calibration_inputs(images: np.ndarray, inputs: ModelInputs, count: int = CALIBRATION_IMAGES) -> torch.Tensor:
    """Model inputs from `count` images spread over the set, to calibrate int8 quantization ranges."""
    picked = images[np.linspace(0, len(images) - 1, min(count, len(images))).astype(int)]
    return resize(normalised_batch(picked, inputs, torch.device("cpu")), inputs.img_size)


def recheck_near_ties(probabilities: np.ndarray, model: torch.nn.Module, images: np.ndarray, inputs: ModelInputs,
                      tta: str, runtime: Runtime, batch_size: int, margin: float = INT8_RECHECK_MARGIN) -> int:
    """Predict again with the fp32 `model` the images whose two top int8 probabilities lie within `margin`,
    in place: int8 rounding changes the argmax almost only on such near ties. Returns how many."""
    top_two = np.partition(probabilities, -2, axis=1)[:, -2:]
    near = np.flatnonzero(np.abs(top_two[:, 1] - top_two[:, 0]) < margin)
    if len(near):
        probabilities[near] = np.exp(infer(model, images[near], inputs, tta, runtime, batch_size))
    return len(near)
