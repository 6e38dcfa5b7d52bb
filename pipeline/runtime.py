"""Where and how tensors compute: one `Runtime` (device, ranks, autocast dtype, memory format) resolved
once per command, and the hardware probes behind it."""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import torch

from pipeline.distributed import Ranks, init_from_env, own_device
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


def gpu_has_bf16(device: torch.device) -> bool:
    """Whether this GPU computes in bf16 natively: compute capability 8.0 (Ampere) or newer. Older ones
    (T4, V100, P100) only emulate it, and cuDNN has no bf16 convolutions there;
    `torch.cuda.is_bf16_supported()` answers True for them, counting the emulation."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # autocast dtype per --precision; fp32: none
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}  # image tensors' memory layout


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype `--precision` means on `device` (None: fp32). `auto` on CUDA: bf16 where the GPU
    computes it natively, else fp16 (trained with a gradient scaler) — never a dtype the GPU only emulates. On
    the CPU `auto` starts in fp32 and is decided by measurement (pipeline/precision.py), not by CPU flags."""
    if precision == "auto" and device.type == "cuda":
        return torch.bfloat16 if gpu_has_bf16(device) else torch.float16
    return AMP_DTYPES.get(precision)


@dataclass(frozen=True)
class Runtime:
    """Where this process computes and how: its device (one GPU per local rank), its place in a torchrun
    job, and the autocast dtype (None: fp32)."""

    device: torch.device = torch.device("cpu")
    ranks: Ranks = Ranks()
    amp_dtype: torch.dtype | None = None
    layout: str | None = None  # a LAYOUTS name; None: the device's default

    @property
    def memory_format(self) -> torch.memory_format:
        """The layout's, else channels_last on CUDA and contiguous on the CPU (where `--precision auto` measures
        both for training: channels_last trained fastnet 1.4× and a ResNet-18 1.2× faster on one AMD EPYC,
        benchmarks/layout_speed.py)."""
        if self.layout is not None:
            return LAYOUTS[self.layout]
        return torch.channels_last if self.device.type == "cuda" else torch.contiguous_format

    @property
    def precision(self) -> str:
        return next((name for name, dtype in AMP_DTYPES.items() if dtype is self.amp_dtype), "fp32")

    def in_precision(self, precision: str) -> Runtime:
        """This runtime computing in `precision` (bf16 or fp16 autocast, or fp32 for any other name)."""
        return dataclasses.replace(self, amp_dtype=AMP_DTYPES.get(precision))

    def in_candidate(self, candidate: str) -> Runtime:
        """This runtime as a training candidate names it: a precision, then a layout when not contiguous
        (`bf16`, `bf16 channels_last`)."""
        precision, _, layout = candidate.partition(" ")
        return dataclasses.replace(self.in_precision(precision), layout=layout or "contiguous")

    @property
    def candidate(self) -> str:
        """The training candidate this runtime computes as: `in_candidate`'s name."""
        return self.precision + (" channels_last" if self.memory_format == torch.channels_last else "")

    def gradient_scaler(self) -> torch.amp.GradScaler:
        """Scales the fp16 loss so that small gradients do not underflow to zero, and skips the steps whose
        gradients overflow; a no-op in bf16 and fp32, whose range needs no scaling."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype is torch.float16)

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)

    def describe(self) -> str:
        """e.g. `cuda:0 (NVIDIA H100) × 2 processes`."""
        name = f" ({torch.cuda.get_device_name(self.device)})" if self.device.type == "cuda" else ""
        return f"{self.device}{name}" + (f" × {self.ranks.world} processes" if self.ranks.distributed else "")


def resolve_runtime(device: str, precision: str = "fp32", threads: int | None = None) -> Runtime:
    """The device `--device` names (joining torchrun's process group, if any, with this process's own GPU
    set before any collective) and the autocast dtype `--precision` means there (bf16, fp16 or fp32). `threads`
    (`--threads`) sets the CPU threads of this process; without it torch's default holds (OMP_NUM_THREADS
    when set, else one per core)."""
    if threads is not None:
        if threads < 1:
            raise PipelineError(f"--threads must be 1 or more, got {threads}")
        torch.set_num_threads(threads)
    wanted = resolve_device(device)
    ranks = init_from_env(wanted)
    local = own_device(wanted, ranks.local_rank, ranks.distributed)
    if local.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fastest convolution per input shape; no run asks for determinism
    return Runtime(local, ranks, autocast_dtype(precision, local))
