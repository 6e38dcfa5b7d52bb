"""The user's flow as typed, through the console script in a fresh project folder: the smoke subset that also runs
at the lowest dependency versions pyproject.toml admits (`make test-floors`) and at a GPU machine image's
(`make test-gpu-image`)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.smoke


def pipeline(cwd: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0 and done.stderr.count("Traceback") == 0, (args, done.stdout, done.stderr)
    return done.stdout


def test_fetch_sample_train_predict_report_runs(tmp_path):
    fetched = pipeline(tmp_path, "fetch", "--sample")
    assert "dataset ready" in fetched and json.loads((tmp_path / "dataset" / "competition.json").read_text())
    trained = pipeline(tmp_path, "train", "--name", "smoke", "--lr", "0.1", "--epochs", "2", "--batch-size", "64",
                       "--limit", "640", "--device", "cpu", "--precision", "fp32")  # the default recipe, in short
    assert "best val accuracy" in trained
    metrics = pd.read_csv(tmp_path / "weights" / "smoke" / "metrics.csv")
    assert metrics["epoch"].tolist() == [1, 2] and metrics["train_loss"].notna().all()
    assert list((tmp_path / "weights" / "smoke").glob("**/events.out.tfevents.*")), "no TensorBoard log"
    predicted = pipeline(tmp_path, "predict", "--run", "smoke", "--device", "cpu", "--tta", "flip",
                         "--score", "dataset/solution.csv")
    assert "rows, valid" in predicted and "accuracy on the scored ids" in predicted
    submission = pd.read_csv(tmp_path / "submissions" / "submission.csv", dtype=str)
    sample = pd.read_csv(tmp_path / "dataset" / "sampleSubmission.csv", dtype=str)
    assert submission.columns.tolist() == sample.columns.tolist() and submission["id"].tolist() == sample["id"].tolist()
    reported = pipeline(tmp_path, "report", "smoke", "--device", "cpu")
    assert all((tmp_path / "weights" / "smoke" / name).is_file() for name in ("curves.png", "confusion.png"))
    assert "wrote" in reported
    pipeline(tmp_path, "runs", "--csv", "runs.csv")
    assert pd.read_csv(tmp_path / "runs.csv")["run"].tolist() == ["smoke"]
