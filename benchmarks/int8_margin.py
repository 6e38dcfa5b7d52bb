"""How wide the int8 near-tie re-check must be: OpenVINO int8 against OpenVINO fp32 on test images, flip TTA.

    python benchmarks/int8_margin.py --project DIR --checkpoint FILE [--images 8192]

For each margin (the gap between the two top int8 probabilities under which an image is predicted again in
fp32): the share of images re-checked, and the argmax agreement with fp32 after the re-check. `auto` needs
≥ 99.5 %; the engine's margin is pipeline.int8.INT8_RECHECK_MARGIN. Also the int8 and fp32 rates, which give
the re-check's cost. Results to benchmarks/results/int8_margin-*.json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.cache import cached_test_images
from pipeline.engine import OpenVinoNet, compile_openvino, onnx_network
from pipeline.infer import infer, load_model
from pipeline.int8 import INT8_RECHECK_MARGIN, calibration_inputs
from pipeline.layout import check_test
from pipeline.runtime import Runtime
from record import write_result

MARGINS = (0.0, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03)


def rate_and_probabilities(net, images: np.ndarray, config) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    probabilities = np.exp(infer(net, images, config.inputs, "flip", Runtime(), 256))
    return len(images) / (time.perf_counter() - started), probabilities


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--images", type=int, default=8192)
    args = parser.parse_args()
    dataset = args.project / "dataset"
    _, images, _ = cached_test_images(dataset, check_test(dataset))
    model, config = load_model(args.checkpoint, torch.device("cpu"))
    picked = np.asarray(images[np.sort(np.random.default_rng(1).choice(len(images), min(args.images, len(images)),
                                                                      replace=False))])
    calibration = calibration_inputs(images, config.inputs)
    graph, _ = onnx_network(model, config, images, str(args.checkpoint))
    nets = {precision: OpenVinoNet(compile_openvino(graph, calibration, precision, str(args.checkpoint)))
            for precision in ("fp32", "int8")}
    nets["int8"](calibration[:8]), nets["fp32"](calibration[:8])  # one-off costs before timing
    fp32_rate, reference = rate_and_probabilities(nets["fp32"], picked, config)
    int8_rate, quantized = rate_and_probabilities(nets["int8"], picked, config)
    top_two = np.sort(quantized, 1)[:, -2:]
    gap, flipped = top_two[:, 1] - top_two[:, 0], quantized.argmax(1) != reference.argmax(1)
    margins = {f"{m:g}": {"rechecked": round(float((gap < m).mean()), 5),
                          "agreement": round(float(1 - (flipped & (gap >= m)).mean()), 5)} for m in MARGINS}
    numbers = {"images": len(picked), "tta": "flip", "checkpoint": str(args.checkpoint),
               "images_per_s": {"openvino fp32": round(fp32_rate, 1), "openvino int8": round(int8_rate, 1)},
               "engine_margin": INT8_RECHECK_MARGIN, "margins": margins,
               "largest_flipped_gap": round(float(gap[flipped].max()), 5) if flipped.any() else None}
    print(numbers)
    print("wrote", write_result("int8_margin", torch.device("cpu"), numbers))


if __name__ == "__main__":
    main()
