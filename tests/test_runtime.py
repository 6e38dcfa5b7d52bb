import json

import pytest
import torch

from pipeline import runtime
from pipeline.config import TrainConfig
from pipeline.errors import PipelineError
from pipeline.train import train
from tests.fixtures import QUICK


def test_auto_autocast_is_bf16_only_on_gpus_that_compute_it(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert runtime.autocast_dtype("auto", cpu) is None  # the CPU's is measured (test_precision.py)
    assert runtime.autocast_dtype("bf16", cpu) is torch.bfloat16 and runtime.autocast_dtype("fp32", cpu) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # also where it is emulated
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # A100
    assert runtime.autocast_dtype("auto", cuda) is torch.bfloat16
    for capability in ((7, 5), (7, 0), (6, 0)):  # T4, V100, P100: bf16 only emulated, no cuDNN bf16 convolutions
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        assert runtime.autocast_dtype("auto", cuda) is None
        assert runtime.autocast_dtype("bf16", cuda) is torch.bfloat16  # asked for by name: as asked


def test_bf16_training_by_name(fetched):
    result = train(TrainConfig(epochs=1, limit=64, precision="bf16", **QUICK))
    assert json.loads((result.run_dir / "config.json").read_text())["precision"] == "bf16"


def _fake_gpus(monkeypatch, count: int) -> list:
    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    return current


def test_a_named_gpu_becomes_the_current_one_and_cudnn_picks_its_fastest_kernels(monkeypatch):
    current = _fake_gpus(monkeypatch, 2)
    resolved = runtime.resolve_runtime("cuda:1", "fp32")
    assert resolved.device == torch.device("cuda", 1) and current == [1]
    assert torch.backends.cudnn.benchmark is True
    with pytest.raises(PipelineError, match=r"^--device cuda:2: only 2 GPU\(s\) visible \(cuda:0 to cuda:1\)$"):
        runtime.resolve_runtime("cuda:2", "fp32")
