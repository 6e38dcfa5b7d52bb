"""How one model predicts on this machine: the precision (`--precision`, or what `auto` measures on the CPU
at hand), the module that runs it (the model, or its int8 conversion) and the batch size."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from rich.console import Console

from pipeline.infer import default_batch_size, infer
from pipeline.int8 import calibration_inputs, quantize_int8, recheck_near_ties
from pipeline.precision import Trial, choose, timed
from pipeline.run import RunConfig
from pipeline.runtime import Runtime, autocast_dtype

PROBE_IMAGES = 256  # test images each candidate predicts while `auto` measures
PROBE_MIN_IMAGES = 10_000  # smaller jobs predict in fp32 (or a cached choice): a probe would not pay


@dataclass(frozen=True)
class Engine:
    precision: str  # fp32, bf16 or int8
    net: torch.nn.Module  # what runs: the model, or its int8 conversion
    runtime: Runtime  # with bf16 autocast for bf16
    batch_size: int
    fp32_model: torch.nn.Module | None = None  # int8 only: predicts the near ties again

    def probabilities(self, images: np.ndarray, config: RunConfig, tta: str,
                      console: Console | None = None) -> tuple[np.ndarray, int]:
        """Softmax probabilities of `images` averaged over the TTA views, and how many near ties int8
        predicted again in fp32."""
        probabilities = np.exp(infer(self.net, images, config.inputs, tta, self.runtime, self.batch_size, console,
                                     len(config.classes)))
        if self.fp32_model is None:
            return probabilities, 0
        rechecked = recheck_near_ties(probabilities, self.fp32_model, images, config.inputs, tta, self.runtime,
                                      default_batch_size(self.runtime.device))
        return probabilities, rechecked


def build_engine(precision: str, model: torch.nn.Module, config: RunConfig, images: np.ndarray, runtime: Runtime,
                 batch_size: int | None, name: str) -> Engine:
    """The engine of a precision named by `--precision` (not auto)."""
    if precision == "int8":
        quantized = quantize_int8(model, calibration_inputs(images, config.inputs), name)
        return Engine("int8", quantized, runtime.in_precision("fp32"),
                      batch_size or default_batch_size(runtime.device, int8=True), model)
    return Engine(precision, model, runtime.in_precision(precision), batch_size or default_batch_size(runtime.device))


def auto_precision(model: torch.nn.Module, config: RunConfig, images: np.ndarray, tta: str, runtime: Runtime,
                   batch_size: int | None, name: str, console: Console) -> tuple[str, Engine | None]:
    """What `--precision auto` predicts in here, and the engine the CPU probe built for it (None: build it).
    On CUDA: bf16 where the GPU computes it natively, else fp32. On the CPU: measured (pipeline/precision.py)."""
    if runtime.device.type == "cuda":
        return ("bf16" if autocast_dtype("auto", runtime.device) else "fp32"), None
    probe = images[np.linspace(0, len(images) - 1, min(PROBE_IMAGES, len(images))).astype(int)]
    built: dict[str, Engine] = {}

    def trial(precision: str) -> Trial:
        started = time.perf_counter()
        engine = built[precision] = build_engine(precision, model, config, images, runtime, batch_size, name)
        setup_s = time.perf_counter() - started
        rate, (probabilities, _) = timed(lambda: engine.probabilities(probe, config, tta),
                                         lambda: engine.probabilities(probe[:8], config, tta), len(probe))
        return Trial(rate, probabilities.argmax(1), setup_s)

    shape = {"model": config.options.model, "stem": config.options.stem, "channels": config.channels,
             "input": config.options.img_size or config.image_size, "classes": len(config.classes), "tta": tta,
             "batch_size": batch_size}
    choice = choose("prediction", shape, {p: (lambda p=p: trial(p)) for p in ("fp32", "bf16", "int8")},
                    len(images), len(images) >= PROBE_MIN_IMAGES)
    console.print(choice.describe("prediction"))
    return choice.precision, built.get(choice.precision)
