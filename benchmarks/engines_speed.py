"""Every CPU engine and precision `pipeline predict --engine/--precision auto` chooses among, on one checkpoint
and the same test images; results to benchmarks/results/*.json.

    python benchmarks/engines_speed.py --dataset DIR --checkpoint FILE [--images 4096] [--tta flip]

For each candidate (torch fp32/bf16, OpenVINO fp32/bf16/int8): its one-off setup (ONNX export, int8
calibration, compilation), images/s over --images test images (after a warm-up), and its argmax agreement
with torch fp32 — for int8 also without the near-tie re-check, and how many images that re-check predicted again.
Beside them ONNX Runtime on the same ONNX graphs (fp32, and the same int8 quantization), the engine not kept.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from pipeline.cache import cached_test_images
from pipeline.engine import CPU_CANDIDATES, OPENVINO_BATCH_SIZE, build_engine, onnx_network, quantize_int8
from pipeline.errors import PipelineError
from pipeline.infer import TTA_VIEWS, infer, load_model
from pipeline.int8 import calibration_inputs
from pipeline.layout import check_test
from pipeline.runtime import Runtime
from record import write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--tta", default="flip", choices=list(TTA_VIEWS))
    args = parser.parse_args()
    model, config = load_model(args.checkpoint, torch.device("cpu"))
    _, test, _ = cached_test_images(args.dataset, check_test(args.dataset), Console(quiet=True))
    images = np.asarray(test[np.linspace(0, len(test) - 1, min(args.images, len(test))).astype(int)])
    results, reference = {"images": len(images), "tta": args.tta, "threads": torch.get_num_threads()}, None
    for name in CPU_CANDIDATES:
        started = time.perf_counter()
        try:
            engine = build_engine(name, model, config, test, Runtime(), None, str(args.checkpoint))
        except PipelineError as e:
            results[name] = {"left_out": str(e)}
            continue
        setup_s = time.perf_counter() - started
        engine.probabilities(images[:64], config, args.tta)  # warm-up
        started = time.perf_counter()
        probabilities, rechecked = engine.probabilities(images, config, args.tta)
        rate = len(images) / (time.perf_counter() - started)
        argmax = probabilities.argmax(1)
        reference = argmax if reference is None else reference
        results[name] = {"setup_s": round(setup_s, 2), "images_per_s": round(rate, 1),
                         "agreement_with_torch_fp32": round(float((argmax == reference).mean()), 5)}
        if engine.fallback is not None:  # int8: the same predictions without the near-tie re-check
            started = time.perf_counter()
            raw = infer(engine.net, images, config.inputs, args.tta, engine.runtime, engine.batch_size).argmax(1)
            results[name] |= {"rechecked_images": rechecked,
                              "images_per_s_without_recheck": round(len(images) / (time.perf_counter() - started), 1),
                              "agreement_without_recheck": round(float((raw == reference).mean()), 5)}
    results |= onnx_runtime_rates(model, config, test, images, args.tta, reference, str(args.checkpoint))
    out = write_result("engines_speed", torch.device("cpu"), results)
    Console().print_json(json.dumps(results))
    print(f"wrote {out}")


class OnnxRuntimeNet:
    """An ONNX Runtime session called like a torch module: the engine OpenVINO was measured against."""

    def __init__(self, path: Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def eval(self):
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"input": np.ascontiguousarray(x.numpy())})[0])


def onnx_runtime_rates(model, config, test, images, tta, reference, source) -> dict:
    """ONNX Runtime on the same ONNX graphs OpenVINO compiles (fp32, and int8 from the same quantization),
    without the near-tie re-check: images/s and agreement with torch fp32."""
    rates = {}
    calibration = calibration_inputs(test, config.inputs)
    with tempfile.TemporaryDirectory() as folder:
        fp32 = Path(folder) / "network.onnx"
        fp32.write_bytes(onnx_network(model, config, test, source)[0].SerializeToString())
        for name, path in (("onnxruntime fp32", fp32), ("onnxruntime int8", quantize_int8(fp32, calibration))):
            net = OnnxRuntimeNet(path)
            infer(net, images[:64], config.inputs, tta, Runtime(), OPENVINO_BATCH_SIZE)  # warm-up
            started = time.perf_counter()
            argmax = infer(net, images, config.inputs, tta, Runtime(), OPENVINO_BATCH_SIZE).argmax(1)
            rates[name] = {"images_per_s": round(len(images) / (time.perf_counter() - started), 1),
                           "agreement_with_torch_fp32": round(float((argmax == reference).mean()), 5)}
    return rates


if __name__ == "__main__":
    main()
