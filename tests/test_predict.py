import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from pipeline.config import TrainConfig
from pipeline.errors import PipelineError
from pipeline.predict import ensemble, find_checkpoint, predict
from pipeline.run import Run
from pipeline.train import train
from tests.fixtures import CLASSES, QUICK


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
    assert result.score > 0.5  # 4 classes: chance is 0.25
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


def test_latest_finished_run_or_named_run(trained):
    second = train(TrainConfig(epochs=1, limit=40, **QUICK)).run_dir
    assert find_checkpoint() == second / "best.pt"
    assert find_checkpoint(run=trained / "weights" / "exp") == trained / "weights" / "exp" / "best.pt"
    assert find_checkpoint(run=Path("exp")) == trained / "weights" / "exp" / "best.pt"  # a name under weights/
    with pytest.raises(PipelineError, match="missing: no such run"):
        find_checkpoint(run=Path("missing"))
    (trained / "weights" / "empty").mkdir()
    with pytest.raises(PipelineError, match="no best.pt"):
        find_checkpoint(run=Path("empty"))
    # a newer run that failed (or still runs) is passed over for the newest finished one, and the pick is said
    Run(second).set_status("failed", error="the training loss became nan")
    console = Console(record=True, width=300)
    assert find_checkpoint(console=console) == trained / "weights" / "exp" / "best.pt"
    assert "the newest finished run" in console.export_text()
    Run(trained / "weights" / "exp").set_status("running")
    assert find_checkpoint() == second / "best.pt"  # none finished: the newest, whatever its state


def test_predict_without_runs_is_clear(fetched):
    with pytest.raises(PipelineError, match="no trained run .*run `pipeline train` first"):
        predict()


@pytest.mark.parametrize("options, message", [
    (dict(tta="rotate"), "--tta 'rotate': choose one of none, flip, flip-shift"),
    (dict(precision="half"), "--precision 'half'"),
    (dict(batch_size=0), "--batch-size must be positive"),
])
def test_bad_options(project, options, message):
    with pytest.raises(PipelineError, match=message):
        predict(**options)


def test_bad_checkpoint(trained, tmp_path):
    (tmp_path / "cut.pt").write_bytes((trained / "weights" / "exp" / "best.pt").read_bytes()[:5000])
    with pytest.raises(PipelineError, match="cut.pt: not a readable PyTorch file"):
        predict(checkpoints=[tmp_path / "cut.pt"])
