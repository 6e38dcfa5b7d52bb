import json

import torch

from pipeline import runtime
from pipeline.config import TrainConfig
from pipeline.runtime import inference_precision
from pipeline.train import train
from tests.fixtures import QUICK


def test_auto_precision_picks_what_the_hardware_runs_fast(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(runtime, "cpu_has_int8", lambda: True)
    assert inference_precision("auto", cpu) == "int8" and inference_precision("fp32", cpu) == "fp32"
    monkeypatch.setattr(runtime, "cpu_has_int8", lambda: False)
    assert inference_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    assert inference_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert inference_precision("auto", cuda) == "bf16"


def test_precision_follows_the_hardware(fetched):
    from pipeline.runtime import autocast_dtype, cpu_has_bf16
    cpu = torch.device("cpu")
    assert (autocast_dtype("auto", cpu) is torch.bfloat16) == cpu_has_bf16()
    assert autocast_dtype("bf16", cpu) is torch.bfloat16 and autocast_dtype("fp32", cpu) is None
    result = train(TrainConfig(epochs=1, limit=64, precision="bf16", **QUICK))
    assert json.loads((result.run_dir / "config.json").read_text())["precision"] == "bf16"
