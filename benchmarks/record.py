"""Where benchmark results go: benchmarks/results/<name>-<device>-<time>.json with the device, the
command, the commit, package versions and the numbers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from pipeline.precision import cpu_model
from pipeline.train import versions

RESULTS = Path(os.environ.get("PIPELINE_RESULTS") or Path(__file__).parent / "results")  # gpu_check.sh: $OUT


def commit() -> str:
    """The checked-out commit; PIPELINE_COMMIT names it where the tree travelled without its .git."""
    if os.environ.get("PIPELINE_COMMIT"):
        return os.environ["PIPELINE_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# the CPU flags the speed of each engine and precision depends on
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores, {cpu_model()})"


def cpu_flags() -> list[str]:
    """The SPEED_FLAGS this CPU reports (lscpu's flags line)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return []
    return [flag for flag in SPEED_FLAGS if flag in flags]


def write_result(benchmark: str, device: torch.device, numbers: dict) -> Path:
    report = {
        "benchmark": benchmark, "device": device_name(device), "cpu_flags": cpu_flags(), "versions": versions(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "commit": commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "results": numbers,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{benchmark.replace(' ', '-')}-{device.type}-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    return out
