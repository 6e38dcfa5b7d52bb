"""Where and how tensors compute: the device, and whether bf16 autocast pays on it."""
from __future__ import annotations

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


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 for `--precision bf16`, and for `auto` where the hardware runs it natively; else None (fp32)."""
    if precision == "fp32":
        return None
    native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_bf16()
    return torch.bfloat16 if precision == "bf16" or native else None
