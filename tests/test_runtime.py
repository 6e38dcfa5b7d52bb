import json

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline import runtime
from pipeline.config import TrainConfig
from pipeline.errors import PipelineError
from pipeline.run import load_checkpoint
from pipeline.train import resume, train
from tests.fixtures import QUICK


def test_auto_autocast_is_bf16_on_gpus_that_compute_it_and_fp16_on_older_ones(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert runtime.autocast_dtype("auto", cpu) is None  # the CPU's is measured (test_precision.py)
    assert runtime.autocast_dtype("bf16", cpu) is torch.bfloat16 and runtime.autocast_dtype("fp32", cpu) is None
    assert runtime.autocast_dtype("fp16", cpu) is torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # also where it is emulated
    for capability in ((8, 0), (8, 9), (9, 0)):  # A100, L4, H100
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert runtime.autocast_dtype("auto", cuda) is torch.bfloat16
    for capability in ((7, 5), (7, 0), (6, 0)):  # T4, V100, P100: bf16 only emulated, no cuDNN bf16 convolutions
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert runtime.autocast_dtype("auto", cuda) is torch.float16
        assert runtime.autocast_dtype("bf16", cuda) is torch.bfloat16  # asked for by name: as asked
        assert runtime.autocast_dtype("fp32", cuda) is None
    for precision in ("bf16", "fp16", "fp32"):
        runs_in = runtime.Runtime().in_precision(precision)
        assert runs_in.precision == precision
        assert runs_in.gradient_scaler().is_enabled() == (precision == "fp16")  # only fp16 needs its loss scaled


def test_fp16_trains_with_a_loss_scale_that_checkpoints_and_resumes(fetched):
    result = train(TrainConfig(epochs=1, limit=64, precision="fp16", **QUICK))
    assert json.loads((result.run_dir / "config.json").read_text())["precision"] == "fp16"
    assert np.isfinite(pd.read_csv(result.run_dir / "metrics.csv")["train_loss"]).all()
    last = result.run_dir / "last.pt"
    checkpoint = load_checkpoint(last)
    assert checkpoint["scaler"]["scale"] > 1  # the scaler ran: an fp32 or bf16 run saves an empty state
    checkpoint["scaler"]["scale"] = 1024.0  # as if overflows had lowered it: resume must carry it on
    torch.save(checkpoint, last)
    resume(result.run_dir, {"epochs": 2})
    assert load_checkpoint(last)["scaler"]["scale"] == 1024.0  # no overflow, and 2,000 steps before it grows
    bf16 = train(TrainConfig(epochs=1, limit=64, precision="bf16", name="bf16", **QUICK))
    assert load_checkpoint(bf16.run_dir / "last.pt")["scaler"] == {}


def test_a_step_whose_fp16_gradients_overflow_is_skipped_and_the_scale_halved():
    fp16 = runtime.Runtime().in_precision("fp16")
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler, before = fp16.gradient_scaler(), [p.detach().clone() for p in model.parameters()]
    with fp16.autocast():
        loss = model(torch.full((1, 4), 60000.0)).float().sum() * 1e6  # its gradients overflow fp16
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the step was skipped
    assert scaler.get_scale() == 65536.0 / 2


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


def test_predict_in_fp16_by_name(trained):
    from pipeline.predict import predict

    predict(precision="fp16", tta="flip")
    saved = json.loads((trained / "submissions" / "exp.probs.json").read_text())
    assert (saved["engine"], saved["precision"]) == ("torch", "fp16")


def test_a_training_candidate_names_its_precision_and_layout():
    plain = runtime.Runtime()
    assert plain.memory_format == torch.contiguous_format and plain.candidate == "fp32"
    nhwc = plain.in_candidate("bf16 channels_last")
    assert (nhwc.precision, nhwc.memory_format, nhwc.candidate) == ("bf16", torch.channels_last, "bf16 channels_last")
    assert nhwc.in_candidate("fp32").memory_format == torch.contiguous_format
    assert runtime.Runtime(torch.device("cuda")).memory_format == torch.channels_last  # the device's default
