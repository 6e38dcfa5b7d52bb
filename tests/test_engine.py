"""Prediction engines: torch and OpenVINO (fp32, bf16, int8), what `--engine`/`--precision` leave open, the
int8 near-tie re-check, and `--threads`."""
import ctypes
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import engine, export
from pipeline.engine import CPU_CANDIDATES, candidates
from pipeline.errors import PipelineError
from pipeline.int8 import recheck_near_ties
from pipeline.predict import predict
from pipeline.run import ModelInputs
from pipeline.runtime import Runtime, resolve_runtime


def saved(project) -> tuple[np.ndarray, dict]:
    submissions = project / "submissions"
    return (np.load(submissions / "exp.probs.npy").astype(np.float32),
            json.loads((submissions / "exp.probs.json").read_text()))


@pytest.mark.smoke
@pytest.mark.requires("openvino")
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_openvino_predicts_like_torch_fp32(trained, capsys, precision):
    predict(precision="fp32", engine="torch", tta="flip")
    reference, _ = saved(trained)
    result = predict(precision=precision, engine="openvino", tta="flip", score=trained / "dataset" / "solution.csv")
    probabilities, meta = saved(trained)
    assert result.rows == 40 and result.score > 0.5
    assert (meta["engine"], meta["precision"]) == ("openvino", precision)
    assert f"flip TTA, openvino {precision}) on cpu" in " ".join(capsys.readouterr().out.split())
    if precision == "fp32":
        assert np.abs(probabilities - reference).max() < 1e-3  # float16 storage
    else:
        assert (probabilities.argmax(1) == reference.argmax(1)).mean() >= 0.95
        assert np.abs(probabilities - reference).max() < 0.2


def test_what_engine_and_precision_leave_open(monkeypatch):
    cpu = torch.device("cpu")
    assert candidates("auto", "auto", cpu) == list(CPU_CANDIDATES) and CPU_CANDIDATES[0] == "torch fp32"
    assert candidates("torch", "auto", cpu) == ["torch fp32", "torch bf16"]
    assert candidates("auto", "fp32", cpu) == ["torch fp32", "openvino fp32"]
    assert candidates("auto", "int8", cpu) == ["openvino int8"]
    assert candidates("openvino", "bf16", cpu) == ["openvino bf16"]
    for bad, message in ((("torch", "int8"), "int8 runs on OpenVINO"), (("onnx", "auto"), "--engine 'onnx': choose"),
                         (("auto", "int4"), "--precision 'int4': choose one of auto, bf16, fp16, fp32, int8"),
                         (("openvino", "fp16"), "--engine openvino has no fp16")):
        with pytest.raises(PipelineError, match=message):
            candidates(*bad, cpu)
    cuda = torch.device("cuda", 0)
    assert candidates("auto", "fp16", cpu) == ["torch fp16"]  # by name only: the CPU's auto never measures it
    for capability, expected in (((9, 0), "torch bf16"), ((8, 0), "torch bf16"), ((7, 5), "torch fp16"),
                                 ((6, 0), "torch fp16")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device, c=capability: c)
        assert candidates("auto", "auto", cuda) == [expected]  # never a dtype the GPU only emulates
    assert candidates("torch", "fp32", cuda) == ["torch fp32"]
    for bad in (("openvino", "auto"), ("auto", "int8")):
        with pytest.raises(PipelineError, match="run on the CPU; add --device cpu"):
            candidates(*bad, cuda)


def test_auto_leaves_out_an_engine_that_cannot_build_and_a_forced_one_says_why(trained, monkeypatch, capsys):
    def unexportable(net, example, name):
        raise PipelineError(f"{name}: cannot be exported to ONNX (TraceError: data-dependent); use --engine torch")

    monkeypatch.setattr(export, "onnx_graph", unexportable)
    monkeypatch.setattr(engine, "PROBE_MIN_IMAGES", 0)  # measure even this tiny job
    predict(tta="none")
    printed = " ".join(capsys.readouterr().out.split())
    assert "for prediction (measured: torch fp32 " in printed and "openvino" not in printed.split("predicting")[0]
    assert saved(trained)[1]["engine"] == "torch"
    with pytest.raises(PipelineError, match="cannot be exported to ONNX"):
        predict(engine="openvino", tta="none")


def conv_graph():
    return export.onnx_graph(torch.nn.Conv2d(3, 4, 3).eval(), torch.zeros(2, 3, 8, 8), "conv")


def test_openvino_bf16_is_refused_where_the_cpu_has_no_native_bf16(monkeypatch):
    monkeypatch.setattr(engine, "openvino_has_bf16", lambda: False)
    with pytest.raises(PipelineError, match="does not compute bf16 natively"):
        engine.compile_openvino(conv_graph(), torch.zeros(2, 3, 8, 8), "bf16", "model")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's sigaltstack")
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_compiling_for_openvino_leaves_the_signal_stack_alone(precision):
    """OpenVINO's CPU plugin re-points the thread's alternate signal stack at a buffer that goes with the model; a
    later signal (Ctrl-C, SIGCHLD from a child process) then crashed the process or corrupted its memory."""
    def signal_stack():
        now = engine.SignalStack()
        assert ctypes.CDLL(None).sigaltstack(None, ctypes.byref(now)) == 0
        return now.ss_sp, now.ss_size, now.ss_flags

    before = signal_stack()
    compiled = engine.compile_openvino(conv_graph(), torch.rand(8, 3, 8, 8), precision, "model")
    engine.OpenVinoNet(compiled)(torch.rand(3, 3, 8, 8))
    assert signal_stack() == before


def test_a_graph_openvino_cannot_read_is_a_one_line_error():
    class Garbage:
        def SerializeToString(self):
            return b"not an onnx graph"

    with pytest.raises(PipelineError, match=r"^model: OpenVINO cannot run it in fp32 \(.*\); use --engine torch$"):
        engine.compile_openvino(Garbage(), torch.zeros(2, 3, 8, 8), "fp32", "model")


def test_a_one_image_test_set_still_exports_with_a_dynamic_batch(trained):
    from pipeline.cache import cached_test_images
    from pipeline.infer import infer, load_model
    from pipeline.layout import check_test

    model, config = load_model(trained / "weights" / "exp" / "best.pt", torch.device("cpu"))
    _, images, _ = cached_test_images(trained / "dataset", check_test(trained / "dataset"), None)
    graph, _ = engine.onnx_network(model, config, np.asarray(images[:1]), "exp")
    net = engine.OpenVinoNet(engine.compile_openvino(graph, None, "fp32", "exp"))
    three = np.asarray(images[:3])
    expected = infer(model, three, config.inputs, "none", Runtime(), 3)
    assert np.abs(infer(net, three, config.inputs, "none", Runtime(), 3) - expected).max() < 1e-4


class FixedProbabilities(torch.nn.Module):
    """A 'model' whose logits are the log of given probabilities, one row per input image (its first pixel)."""

    def __init__(self, probabilities):
        super().__init__()
        self.register_buffer("logits", torch.tensor(probabilities).log())

    def forward(self, x):
        return self.logits[x[:, 0, 0, 0].round().long()]


def test_near_ties_are_predicted_again_in_fp32():
    int8 = np.array([[0.50, 0.49, 0.01], [0.90, 0.05, 0.05], [0.30, 0.31, 0.39], [0.40, 0.20, 0.40]], np.float32)
    fp32 = np.array([[0.40, 0.59, 0.01], [0.80, 0.10, 0.10], [0.20, 0.20, 0.60], [0.50, 0.10, 0.40]], np.float32)
    images = np.arange(4, dtype=np.uint8)[:, None, None, None].repeat(2, 1).repeat(2, 2).repeat(3, 3)
    inputs = ModelInputs((0.0,) * 3, (1 / 255,) * 3)  # normalised pixel = its uint8 value
    probabilities = int8.copy()
    count = recheck_near_ties(probabilities, FixedProbabilities(fp32), images, inputs, "none", Runtime(),
                              2, margin=0.05)
    assert count == 2  # rows 0 (0.50 vs 0.49) and 3 (a tie); row 2's top two are 0.08 apart
    assert np.allclose(probabilities[[0, 3]], fp32[[0, 3]], atol=1e-6)
    assert np.array_equal(probabilities[[1, 2]], int8[[1, 2]])


def test_threads_sets_this_process_and_what_openvino_compiles_for(monkeypatch):
    before = torch.get_num_threads()
    try:
        resolve_runtime("cpu", threads=1)
        assert torch.get_num_threads() == 1
        compiled = engine.compile_openvino(conv_graph(), torch.zeros(2, 3, 8, 8), "fp32", "model")
        assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(PipelineError, match="--threads must be 1 or more, got 0"):
        resolve_runtime("cpu", threads=0)


def test_omp_num_threads_is_honoured_when_threads_is_not_given(tmp_path):
    import os
    import subprocess
    import sys

    probe = ("import torch; from pipeline.runtime import resolve_runtime; from pipeline.engine import compile_openvino; "
             "from tests.test_engine import conv_graph; resolve_runtime('cpu'); "
             "net = compile_openvino(conv_graph(), None, 'fp32', 'model'); "
             "print(torch.get_num_threads(), net.get_property('INFERENCE_NUM_THREADS'))")
    root = str(Path(__file__).parents[1])
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": root})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]
