import json

import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console

from pipeline.config import TrainConfig
from pipeline.errors import PipelineError
from pipeline import int8 as int8_module
from pipeline import runtime
from pipeline.infer import TTA_VIEWS, infer, view
from pipeline.int8 import recheck_near_ties
from pipeline.predict import ensemble, find_checkpoint, predict
from pipeline.run import ModelInputs
from pipeline.runtime import Runtime, inference_precision
from pipeline.submission import score_submission, validate_submission, write_submission
from pipeline.train import train
from tests.fixtures import CLASSES

QUICK = dict(batch_size=32, workers=0, lr=0.02)


@pytest.fixture
def trained(fetched):
    train(TrainConfig(epochs=3, **QUICK))
    return fetched


def test_predict_writes_valid_submission_in_sample_order(trained):
    sample = trained / "dataset" / "sampleSubmission.csv"
    frame = pd.read_csv(sample, dtype=str)
    frame.sample(frac=1, random_state=0).to_csv(sample, index=False)  # any order must be kept
    result = predict(score=trained / "dataset" / "solution.csv")
    written = pd.read_csv(trained / "submissions" / "submission.csv", dtype=str)
    assert list(written.columns) == ["id", "label"]
    assert written["id"].tolist() == pd.read_csv(sample, dtype=str)["id"].tolist()
    assert set(written["label"]) <= set(CLASSES)
    assert result.rows == 40 and sum(n for _, n in result.histogram) == 40
    assert [c for c, _ in result.histogram] == sorted(CLASSES)
    assert result.accuracy > 0.5  # 4 classes: chance is 0.25
    record = json.loads((trained / "submissions" / "submission.json").read_text())
    assert record["tta"] == "flip" and record["views"] == [[False, 0, 0], [True, 0, 0]]
    assert record["members"] == ["exp.probs.npy"] and record["rows"] == 40


def test_probabilities_are_saved_in_id_order_as_float16(trained):
    predict(tta="none")
    probs = np.load(trained / "submissions" / "exp.probs.npy")
    assert probs.dtype == np.float16 and probs.shape == (40, 4)
    assert np.allclose(probs.astype(np.float32).sum(1), 1, atol=1e-2)
    labels = np.array(sorted(CLASSES))[probs.argmax(1)]  # test ids are 1..40
    submission = pd.read_csv(trained / "submissions" / "submission.csv", dtype=str).set_index("id")["label"]
    assert (submission[[str(i) for i in range(1, 41)]].to_numpy() == labels).all()


def test_ensemble_averages_members(trained):
    train(TrainConfig(epochs=2, seed=7, name="other", **QUICK))
    runs = [trained / "weights" / "exp", trained / "weights" / "other"]
    joint = predict(runs=runs, tta="none")
    assert joint.members == ["exp.probs.npy", "other.probs.npy"]
    first, second = (np.load(trained / "submissions" / m).astype(np.float32) for m in joint.members)
    expected = np.array(sorted(CLASSES))[((first + second) / 2).argmax(1)]
    submission = pd.read_csv(trained / "submissions" / "submission.csv", dtype=str)
    assert (submission.set_index("id").loc[[str(i) for i in range(1, 41)], "label"].to_numpy() == expected).all()
    before = (trained / "submissions" / "submission.csv").read_text()
    (trained / "submissions" / "submission.csv").unlink()
    assert ensemble([trained / "exp", trained / "other"]).members == joint.members  # by name, no model run
    assert (trained / "submissions" / "submission.csv").read_text() == before


def test_ensemble_refuses_stale_predictions(trained):
    predict(tta="none")
    (trained / "dataset" / "test" / "40.png").unlink()
    frame = pd.read_csv(trained / "dataset" / "sampleSubmission.csv", dtype=str)
    frame[frame["id"] != "40"].to_csv(trained / "dataset" / "sampleSubmission.csv", index=False)
    with pytest.raises(PipelineError, match="made for other test ids"):
        ensemble([trained / "submissions" / "exp.probs.npy"])
    with pytest.raises(PipelineError, match="no such probability file"):
        ensemble([trained / "nope"])


def test_views_flip_and_shift():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    assert torch.equal(view(x, True, 0, 0), x.flip(3))
    down = view(x, False, 1, 0)
    assert torch.equal(down[:, :, 1:], x[:, :, :-1]) and (down[:, :, 0] == 0).all()
    left = view(x, False, 0, -2)
    assert torch.equal(left[..., :-2], x[..., 2:]) and (left[..., -2:] == 0).all()
    assert len(TTA_VIEWS["flip-shift"]) == 10 and len(set(TTA_VIEWS["flip-shift"])) == 10


def test_tta_averages_softmax_over_views():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5)).eval()
    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    cpu = torch.device("cpu")
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    for tta in TTA_VIEWS:
        got = np.exp(infer(model, images, ModelInputs((0, 0, 0), (1, 1, 1)), tta, Runtime(cpu), 4, Console()))
        with torch.no_grad():
            expected = sum(model(view(x, *v)).softmax(1) for v in TTA_VIEWS[tta]) / len(TTA_VIEWS[tta])
        assert got.shape == (6, 5) and np.allclose(got, expected.numpy(), atol=1e-5), tta


def test_latest_run_or_named_run(trained):
    second = train(TrainConfig(epochs=1, limit=40, **QUICK)).run_dir
    assert find_checkpoint() == second / "best.pt"
    assert find_checkpoint(run=trained / "weights" / "exp") == trained / "weights" / "exp" / "best.pt"
    with pytest.raises(PipelineError, match="no best.pt"):
        find_checkpoint(run=trained / "weights" / "missing")


def test_predict_without_runs_is_clear(fetched):
    with pytest.raises(PipelineError, match="no trained run .*run `pipeline train` first"):
        predict()


def test_bad_options_and_checkpoint(trained, tmp_path):
    with pytest.raises(PipelineError, match="--tta 'rotate': choose one of none, flip, flip-shift"):
        predict(tta="rotate")
    with pytest.raises(PipelineError, match="--precision 'half'"):
        predict(precision="half")
    (tmp_path / "cut.pt").write_bytes((trained / "weights" / "exp" / "best.pt").read_bytes()[:5000])
    with pytest.raises(PipelineError, match="cut.pt: not a readable PyTorch file"):
        predict(checkpoints=[tmp_path / "cut.pt"])


@pytest.fixture
def sample_csv(tmp_path):
    path = tmp_path / "sampleSubmission.csv"
    path.write_text("id,label\n3,a\n1,a\n2,a\n")
    return path


@pytest.mark.parametrize("content, message", [
    ("id,label\n3,a\n1,b\n", "2 rows, but .* has 3"),
    ("id,label\n3,a\n2,b\n1,a\n", "row 3 has id 2, sampleSubmission.csv has 1 there"),
    ("id,label\n3,a\n1,b\n2,dog\n", "unknown label\\(s\\) 'dog'"),
    ("id,class\n3,a\n1,b\n2,a\n", "missing column\\(s\\) label"),
])
def test_validation_failures(tmp_path, sample_csv, content, message):
    path = tmp_path / "submission.csv"
    path.write_text(content)
    with pytest.raises(PipelineError, match=message):
        validate_submission(path, sample_csv, ["a", "b"])


def test_invalid_submission_never_replaces_the_previous_one(tmp_path, sample_csv):
    out = tmp_path / "submission.csv"
    write_submission(out, ["3", "1", "2"], ["a", "b", "a"], sample_csv, ["a", "b"])
    before = out.read_text()
    assert before == "id,label\n3,a\n1,b\n2,a\n"
    with pytest.raises(PipelineError, match="unknown label"):
        write_submission(out, ["3", "1", "2"], ["a", "zzz", "a"], sample_csv, ["a", "b"])
    assert out.read_text() == before
    assert {p.name for p in tmp_path.iterdir()} == {"sampleSubmission.csv", "submission.csv"}


def test_score(tmp_path):
    (tmp_path / "s.csv").write_text("id,label\n1,a\n2,b\n3,a\n4,b\n")
    (tmp_path / "solution.csv").write_text("id,label\n2,b\n4,a\n")
    assert score_submission(tmp_path / "s.csv", tmp_path / "solution.csv") == (0.5, 2)
    (tmp_path / "solution.csv").write_text("id,label\n9,a\n")
    with pytest.raises(PipelineError, match="lacks 1 id"):
        score_submission(tmp_path / "s.csv", tmp_path / "solution.csv")


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


def test_auto_falls_back_to_fp32_when_a_model_cannot_be_quantized(trained, monkeypatch, capsys):
    def untraceable(model, calibration, name):
        raise PipelineError(f"--precision int8: {name} cannot be traced for quantization (TraceError); use fp32")

    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(runtime, "cpu_has_int8", lambda: True)
    monkeypatch.setattr(int8_module, "quantize_int8", untraceable)
    predict(precision="fp32", tta="none")
    fp32 = np.load(trained / "submissions" / "exp.probs.npy")
    capsys.readouterr()
    predict(tta="none")
    assert "cannot be traced for int8 quantization; predicting in fp32" in capsys.readouterr().out
    assert np.array_equal(np.load(trained / "submissions" / "exp.probs.npy"), fp32)
    assert json.loads((trained / "submissions" / "exp.probs.json").read_text())["precision"] == "fp32"
    with pytest.raises(PipelineError, match="cannot be traced for quantization"):
        predict(precision="int8", tta="none")
