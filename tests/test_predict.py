import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import TrainConfig
from pipeline.errors import PipelineError
from pipeline.predict import TTA_VIEWS, find_checkpoint, predict, predict_probabilities
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
    result = predict(workers=0, score=trained / "dataset" / "solution.csv")
    written = pd.read_csv(trained / "submissions" / "submission.csv", dtype=str)
    assert list(written.columns) == ["id", "label"]
    assert written["id"].tolist() == pd.read_csv(sample, dtype=str)["id"].tolist()
    assert set(written["label"]) <= set(CLASSES)
    assert result.rows == 40 and sum(n for _, n in result.histogram) == 40
    assert [c for c, _ in result.histogram] == sorted(CLASSES)
    assert result.accuracy > 0.5  # 4 classes: chance is 0.25
    assert result.checkpoint == trained / "weights" / "exp" / "best.pt"


def test_flip_tta_averages_image_and_mirror():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(5)).eval()
    images = torch.randn(6, 3, 8, 8)
    model(images)
    loader = torch.utils.data.DataLoader(list(zip(images, [0] * 6)), batch_size=4)
    from rich.console import Console
    flip = predict_probabilities(model, loader, "flip", torch.device("cpu"), Console())
    with torch.no_grad():
        expected = (model(images).softmax(1) + model(images.flip(3)).softmax(1)) / 2
    assert flip.shape == (6, 5) and np.allclose(flip, expected.numpy(), atol=1e-6)
    plain = predict_probabilities(model, loader, "none", torch.device("cpu"), Console())
    assert np.allclose(plain, model(images).softmax(1).detach().numpy(), atol=1e-6)
    assert set(TTA_VIEWS) == {"none", "flip"}


def test_latest_run_or_named_run(trained):
    second = train(TrainConfig(epochs=1, limit=40, **QUICK)).run_dir
    assert find_checkpoint() == second / "best.pt"
    assert find_checkpoint(run=trained / "weights" / "exp") == trained / "weights" / "exp" / "best.pt"
    with pytest.raises(PipelineError, match="no best.pt"):
        find_checkpoint(run=trained / "weights" / "missing")


def test_predict_without_runs_is_clear(fetched):
    with pytest.raises(PipelineError, match="no trained run .*run `pipeline train` first"):
        predict(workers=0)


def test_bad_tta_and_checkpoint(trained, tmp_path):
    with pytest.raises(PipelineError, match="--tta 'rotate': choose one of none, flip"):
        predict(tta="rotate")
    (tmp_path / "cut.pt").write_bytes((trained / "weights" / "exp" / "best.pt").read_bytes()[:5000])
    with pytest.raises(PipelineError, match="cut.pt: not a readable PyTorch file"):
        predict(checkpoint=tmp_path / "cut.pt")


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
