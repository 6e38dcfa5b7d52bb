"""Where and how tensors compute: the device, whether bf16 autocast pays on it, int8 quantization for CPUs."""
from __future__ import annotations

import copy
import functools
from pathlib import Path

import torch

from pipeline.errors import PipelineError


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise PipelineError(f"--device {spec}: no CUDA device is available; use --device cpu")
    try:
        return torch.device(spec)
    except RuntimeError:
        raise PipelineError(f"--device {spec!r}: expected auto, cpu or cuda[:N]") from None


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX); without them bf16 is emulated and slow."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


@functools.cache
def cpu_has_int8() -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX), where int8
    convolutions run several times faster than fp32. Read once per process."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 for `--precision bf16`, and for `auto` where the hardware runs it natively; else None (fp32)."""
    if precision == "fp32":
        return None
    native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_bf16()
    return torch.bfloat16 if precision == "bf16" or native else None


def inference_precision(precision: str, device: torch.device) -> str:
    """What `--precision` means for inference on `device`: `auto` is bf16 where the hardware runs it natively,
    else int8 on CPUs with int8 dot-product instructions, else fp32."""
    if precision != "auto":
        return precision
    if autocast_dtype(precision, device) is not None:
        return "bf16"
    return "int8" if device.type == "cpu" and cpu_has_int8() else "fp32"


def quantize_int8(model: torch.nn.Module, calibration: torch.Tensor, name: str) -> torch.nn.Module:
    """Post-training static int8 quantization for CPU inference (PyTorch's FX graph mode, x86 engine):
    per-channel weights, activation ranges observed on `calibration` (normalised input batches).
    Activations use all 8 bits where the CPU has VNNI (no 16-bit intermediate to overflow), 7 otherwise."""
    import warnings

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    qconfig = get_default_qconfig_mapping("onednn" if cpu_has_int8() else "x86")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        try:
            prepared = prepare_fx(copy.deepcopy(model).eval(), qconfig, example_inputs=(calibration[:1],))
        except Exception as e:  # FX tracing fails on data-dependent Python control flow
            raise PipelineError(f"--precision int8: {name} cannot be traced for quantization ({type(e).__name__}); "
                                "use --precision fp32") from None
        with torch.no_grad():
            for batch in calibration.split(64):
                prepared(batch)
        return convert_fx(prepared)
