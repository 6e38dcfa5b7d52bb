"""How one model predicts on this machine: the engine (torch, or OpenVINO on the CPU), the precision and the
batch size, forced by `--engine`/`--precision` or measured by `auto` on the CPU at hand (pipeline/precision.py).

Engines, measured on a 2-core AMD EPYC (AVX512-BF16/VNNI), custom ResNet-18 at 32×32, images/s with flip TTA
(benchmarks/engines_speed.py): torch fp32 227, bf16 415; OpenVINO fp32 386, bf16 715, int8 1,129 (718 with the
near-tie re-check); ONNX Runtime fp32 346, int8 1,032 on the same graphs. ONNX Runtime won nothing there, so it is not an engine: it calibrates
the int8 graph (static quantization, QDQ) and checks exports."""
from __future__ import annotations

import ctypes
import logging
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from pipeline.config import ENGINES, PREDICT_PRECISIONS, check_choice
from pipeline.errors import PipelineError
from pipeline.infer import default_batch_size, infer
from pipeline.int8 import CALIBRATION_IMAGES, calibration_inputs, recheck_near_ties
from pipeline.precision import Trial, choose, timed
from pipeline.run import RunConfig
from pipeline.runtime import Runtime, autocast_dtype

# what `auto` may pick on the CPU, the reference (fp32, the default for jobs too small to measure) first
CPU_CANDIDATES = ("torch fp32", "torch bf16", "openvino fp32", "openvino bf16", "openvino int8")
PROBE_IMAGES = 256  # test images a candidate predicts when `auto` checks its agreement with fp32
RATE_IMAGES = 128  # the first of them, timed: the rate of every candidate
CONFIRM_IMAGES = 768  # more test images a near-miss candidate and the fp32 reference predict (precision.CONFIRM_BAND)
PROBE_MIN_IMAGES = 10_000  # smaller jobs predict with the first candidate (or a cached choice): a probe would not pay
OPENVINO_BATCH_SIZE = 256  # images per call (OpenVINO int8 ran alike at 64, 256 and 1,024 here); torch: infer.py


@dataclass(frozen=True)
class Engine:
    name: str  # "<engine> <precision>", e.g. openvino int8
    net: Callable[[torch.Tensor], torch.Tensor]  # what runs: the model, or its OpenVINO compilation
    runtime: Runtime  # with bf16 or fp16 autocast for torch bf16 and fp16
    batch_size: int
    fallback: Callable[[torch.Tensor], torch.Tensor] | None = None  # int8 only: predicts the near ties in fp32

    @property
    def precision(self) -> str:
        return self.name.split()[1]

    def probabilities(self, images: np.ndarray, config: RunConfig, tta: str,
                      console: Console | None = None) -> tuple[np.ndarray, int]:
        """Softmax probabilities of `images` averaged over the TTA views, and how many near ties int8
        predicted again in fp32."""
        probabilities = np.exp(infer(self.net, images, config.inputs, tta, self.runtime, self.batch_size, console,
                                     len(config.classes)))
        if self.fallback is None:
            return probabilities, 0
        rechecked = recheck_near_ties(probabilities, self.fallback, images, config.inputs, tta, self.runtime,
                                      self.batch_size)
        return probabilities, rechecked


class SignalStack(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]  # Linux's stack_t


@contextmanager
def signal_stack_kept() -> Iterator[None]:
    """Puts this thread's alternate signal stack back as it was. OpenVINO's CPU plugin points it at a buffer of its own
    when it compiles a model, and that buffer goes with the model: a signal handled later (Ctrl-C, a child's SIGCHLD)
    then either crashes (SIGSEGV, SI_KERNEL) or writes its frame over live memory."""
    if not sys.platform.startswith("linux"):
        yield
        return
    libc, before = ctypes.CDLL(None), SignalStack()
    libc.sigaltstack(None, ctypes.byref(before))
    try:
        yield
    finally:
        libc.sigaltstack(ctypes.byref(before), None)


class OpenVinoNet:
    """A network compiled by OpenVINO for this CPU, called like the torch module it came from."""

    def __init__(self, compiled):
        self.request = compiled.create_infer_request()

    def eval(self) -> OpenVinoNet:
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.request.infer({0: np.ascontiguousarray(x.numpy())})
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())


def candidates(engine: str, precision: str, device: torch.device) -> list[str]:
    """The engine/precision pairs `--engine` and `--precision` leave open on `device`, the default first."""
    check_choice("engine", engine, ENGINES)
    check_choice("precision", precision, PREDICT_PRECISIONS)
    if device.type == "cuda":
        if engine == "openvino" or precision == "int8":
            raise PipelineError("--engine openvino and --precision int8 run on the CPU; add --device cpu, "
                                "or leave them at auto on CUDA")
        auto = Runtime(device, amp_dtype=autocast_dtype("auto", device)).precision
        return [f"torch {auto if precision == 'auto' else precision}"]
    if precision == "fp16":
        if engine == "openvino":
            raise PipelineError("--engine openvino has no fp16 on the CPU: use --engine torch, or --precision bf16")
        return ["torch fp16"]
    left = [c for c in CPU_CANDIDATES if engine in ("auto", c.split()[0]) and precision in ("auto", c.split()[1])]
    if not left:
        raise PipelineError(f"--engine {engine} has no {precision}: int8 runs on OpenVINO; use --engine openvino "
                            "or auto")
    return left


def build_engine(name: str, model: torch.nn.Module, config: RunConfig, images: np.ndarray, runtime: Runtime,
                 batch_size: int | None, source: str) -> Engine:
    """The engine `name` ("torch bf16", "openvino int8", …) for `model`; int8 calibrates on `images`."""
    engine, precision = name.split()
    if engine == "torch":
        return Engine(name, model, runtime.in_precision(precision), batch_size or default_batch_size(runtime.device))
    calibration = calibration_inputs(images, config.inputs, CALIBRATION_IMAGES if precision == "int8" else 2)
    graph, _ = onnx_network(model, config, images, source)
    net = OpenVinoNet(compile_openvino(graph, calibration, precision, source))
    fallback = OpenVinoNet(compile_openvino(graph, calibration, "fp32", source)) if precision == "int8" else None
    return Engine(name, net, runtime.in_precision("fp32"), batch_size or OPENVINO_BATCH_SIZE, fallback)


def fp32_agreement(engine: Engine, model: torch.nn.Module, config: RunConfig, images: np.ndarray, tta: str,
                   runtime: Runtime) -> tuple[float, int]:
    """How often `engine`'s argmax is torch fp32's on up to PROBE_IMAGES of `images` spread over them, and on how
    many: what `--precision auto` checks before it takes a lower precision, measured for one that was asked for."""
    probe = images[np.linspace(0, len(images) - 1, min(PROBE_IMAGES, len(images))).astype(int)]
    reference = Engine("torch fp32", model, runtime.in_precision("fp32"), engine.batch_size)
    agree = engine.probabilities(probe, config, tta)[0].argmax(1) == reference.probabilities(probe, config, tta)[0].argmax(1)
    return float(agree.mean()), len(probe)


_graphs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model → (its ONNX graph or why not, seconds)


def onnx_network(model: torch.nn.Module, config: RunConfig, images: np.ndarray, source: str):
    """`model`'s ONNX graph and the seconds its export took, exported once per model (a failure is kept too:
    the probe's OpenVINO candidates share it)."""
    if model not in _graphs:
        openvino_libraries()
        from pipeline.export import onnx_graph

        started = time.perf_counter()
        try:
            _graphs[model] = (onnx_graph(model, calibration_inputs(images, config.inputs, 1), source),
                              time.perf_counter() - started)
        except PipelineError as e:
            _graphs[model] = (e, 0.0)
    graph, seconds = _graphs[model]
    if isinstance(graph, PipelineError):
        raise graph
    return graph, seconds


def openvino_libraries():
    """The openvino module, once the libraries the OpenVINO engine needs are known to be installed."""
    try:
        import onnx  # noqa: F401  (the exporter)
        import onnxruntime  # noqa: F401  (int8 calibration)
        import onnxscript  # noqa: F401  (the exporter)
        import openvino
    except ImportError as e:
        package = (e.name or "openvino").split(".")[0]
        raise PipelineError(f"--engine openvino needs {package}, which is not installed: pip install {package}, "
                            "or use --engine torch") from None
    return openvino


def compile_openvino(graph, calibration: torch.Tensor, precision: str, source: str):
    """The ONNX `graph` compiled by OpenVINO for this CPU in `precision`, on as many threads as torch uses. int8:
    statically quantized first (per-channel weights, activation ranges from `calibration`) by ONNX Runtime."""
    openvino = openvino_libraries()
    if precision == "bf16" and not openvino_has_bf16():
        raise PipelineError("--engine openvino --precision bf16: this CPU does not compute bf16 natively")
    core = openvino.Core()
    try:
        with tempfile.TemporaryDirectory(prefix="pipeline-onnx-") as folder:
            path = Path(folder) / "network.onnx"
            path.write_bytes(graph.SerializeToString())
            if precision == "int8":
                path = quantize_int8(path, calibration)
            network = core.read_model(str(path))
        with signal_stack_kept():
            return core.compile_model(network, "CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads(),
                                                       "PERFORMANCE_HINT": "LATENCY",
                                                       "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"})
    except Exception as e:  # an operator OpenVINO or the quantizer does not handle
        first = (str(e).splitlines() or [""])[0][:200]
        raise PipelineError(f"{source}: OpenVINO cannot run it in {precision} ({type(e).__name__}: {first}); "
                            "use --engine torch") from None


def openvino_has_bf16() -> bool:
    """Whether OpenVINO computes bf16 natively on this CPU (AVX512-BF16 or AMX); elsewhere it would emulate it."""
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def quantize_int8(path: Path, calibration: torch.Tensor) -> Path:
    """The ONNX graph at `path` with int8 weights (per channel) and activations (ranges observed on
    `calibration`) as QuantizeLinear/DequantizeLinear pairs, which OpenVINO runs as int8 kernels."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": batch.numpy()} for batch in calibration.split(64)])

        def get_next(self):
            return next(self.batches, None)

    quantized = path.with_suffix(".int8.onnx")
    logging.disable(logging.WARNING)  # it advises a pre-processing pass; the exporter already folded batch norms
    try:
        quantize_static(str(path), str(quantized), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    return quantized


def choose_engine(options: list[str], model: torch.nn.Module, config: RunConfig, images: np.ndarray, tta: str,
                  runtime: Runtime, batch_size: int | None, source: str, console: Console) -> tuple[str, Engine | None]:
    """Which of `options` predicts `images` soonest on this CPU, and the engine the probe built for it (None:
    build it). One option needs no probe; otherwise each predicts a few hundred test images (pipeline/precision.py)."""
    if len(options) == 1:
        return options[0], None
    probed = np.linspace(0, len(images) - 1, min(PROBE_IMAGES, len(images))).astype(int)
    probe = images[probed]
    built: dict[str, Engine] = {}

    def trial(name: str) -> Trial:
        export_s = onnx_network(model, config, images, source)[1] if name.startswith("openvino") else 0.0
        started = time.perf_counter()
        engine = built[name] = build_engine(name, model, config, images, runtime, batch_size, source)
        setup_s = export_s + time.perf_counter() - started  # every OpenVINO candidate needs the export
        rate, (timed_probabilities, _) = timed(lambda: engine.probabilities(probe[:RATE_IMAGES], config, tta),
                                               lambda: engine.probabilities(probe[:8], config, tta),
                                               len(probe[:RATE_IMAGES]))

        def argmax() -> np.ndarray:  # the rest of the probe images are predicted only if its agreement decides
            rest = probe[RATE_IMAGES:]
            answers = [timed_probabilities] + ([engine.probabilities(rest, config, tta)[0]] if len(rest) else [])
            return np.concatenate(answers).argmax(1)
        return Trial(rate, argmax, setup_s)

    others = np.setdiff1d(np.arange(len(images)), probed)
    more = images[np.sort(np.random.default_rng(0).choice(others, min(CONFIRM_IMAGES, len(others)), replace=False))]
    expected: dict[str, np.ndarray] = {}

    def confirm(name: str, reference: str) -> tuple[np.ndarray, np.ndarray]:
        """`name`'s argmax and the fp32 `reference`'s (predicted once) on `more` images."""
        if reference not in expected:
            expected[reference] = built[reference].probabilities(more, config, tta)[0].argmax(1)
        return built[name].probabilities(more, config, tta)[0].argmax(1), expected[reference]

    shape = {"model": config.options.model, "stem": config.options.stem, "channels": config.channels,
             "input": config.options.img_size or config.image_size, "classes": len(config.classes), "tta": tta,
             "batch_size": batch_size}
    choice = choose("prediction", shape, {name: (lambda name=name: trial(name)) for name in options},
                    len(images), len(images) >= PROBE_MIN_IMAGES, confirm if len(more) else None)
    console.print(choice.describe("prediction"))
    return choice.candidate, built.get(choice.candidate)
