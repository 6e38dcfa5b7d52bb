import json

import numpy as np
import pytest
import torch

from pipeline import engine
from pipeline.errors import PipelineError
from pipeline.int8 import recheck_near_ties
from pipeline.predict import predict
from pipeline.run import ModelInputs
from pipeline.runtime import Runtime


def test_int8_prediction_agrees_with_fp32(trained, capsys):
    predict(precision="fp32", tta="flip")
    fp32 = np.load(trained / "submissions" / "exp.probs.npy").astype(np.float32)
    result = predict(precision="int8", tta="flip", score=trained / "dataset" / "solution.csv")
    int8 = np.load(trained / "submissions" / "exp.probs.npy").astype(np.float32)
    assert result.rows == 40 and result.accuracy > 0.5
    assert (int8.argmax(1) == fp32.argmax(1)).mean() >= 0.95 and np.abs(int8 - fp32).max() < 0.2
    assert "int8) on cpu" in capsys.readouterr().out
    assert json.loads((trained / "submissions" / "exp.probs.json").read_text())["precision"] == "int8"
    with pytest.raises(PipelineError, match="--precision 'int4': choose one of auto, bf16, fp32, int8"):
        predict(precision="int4")


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


def test_auto_leaves_int8_out_when_a_model_cannot_be_quantized(trained, monkeypatch, capsys):
    def untraceable(model, calibration, name):
        raise PipelineError(f"--precision int8: {name} cannot be traced for quantization (TraceError); use fp32")

    monkeypatch.setattr(engine, "quantize_int8", untraceable)
    monkeypatch.setattr(engine, "PROBE_MIN_IMAGES", 0)  # measure even this tiny job
    predict(tta="none")
    printed = " ".join(capsys.readouterr().out.split())
    assert "for prediction (measured: fp32 " in printed and " int8 " not in printed.split("for prediction")[1]
    assert json.loads((trained / "submissions" / "exp.probs.json").read_text())["precision"] in ("fp32", "bf16")
    with pytest.raises(PipelineError, match="cannot be traced for quantization"):
        predict(precision="int8", tta="none")
