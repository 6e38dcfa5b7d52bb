import pandas as pd
import pytest

from pipeline.cli import app
from pipeline.errors import PipelineError
from pipeline.submit import submit
from tests.conftest import SECRET_KEY
from tests.fixtures import CLASSES, runner


@pytest.fixture
def submission(fetched):
    frame = pd.read_csv(fetched / "dataset" / "sampleSubmission.csv", dtype=str).assign(label=CLASSES[1])
    path = fetched / "submissions" / "submission.csv"
    path.parent.mkdir()
    frame.to_csv(path, index=False)
    return path


def test_submit_uploads_the_file_and_creates_the_submission(kaggle, submission):
    kaggle.competitions["cifar-10"] = b""
    result = submit("resnet18 improved, flip TTA")
    assert result.ref == 1001 and "Successfully submitted" in result.message
    [created] = kaggle.submissions
    assert created["competitionName"] == "cifar-10"
    assert created["submissionDescription"] == "resnet18 improved, flip TTA"
    assert kaggle.uploads[created["blobFileTokens"]] == submission.read_bytes()


def test_invalid_file_is_refused_before_any_request(kaggle, submission):
    kaggle.competitions["cifar-10"] = b""
    submission.write_text(submission.read_text().replace(CLASSES[1], "dragon", 1))
    with pytest.raises(PipelineError, match="unknown label\\(s\\) 'dragon'"):
        submit("x")
    assert kaggle.requests == []


@pytest.mark.parametrize("status, message", [(401, "\\(401\\)"), (403, "\\(403\\).*/rules"),
                                             (404, "no Kaggle competition named 'cifar-10'")])
def test_refusals(kaggle, submission, status, message):
    if status != 404:
        kaggle.competitions["cifar-10"] = b""
        kaggle.status = status
    with pytest.raises(PipelineError, match=message) as error:
        submit("x")
    assert SECRET_KEY not in str(error.value)


def test_missing_file_or_message(kaggle, fetched):
    with pytest.raises(PipelineError, match="submission.csv: not found; run `pipeline predict` first"):
        submit("x")
    with pytest.raises(PipelineError, match="--message must describe"):
        submit(" ")


def test_no_server(submission, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_USERNAME", "tester")
    monkeypatch.setenv("KAGGLE_KEY", SECRET_KEY)
    with pytest.raises(PipelineError, match="cannot reach the Kaggle API.*`pipeline submit` again"):
        submit("x")


def test_cli(kaggle, submission):
    kaggle.competitions["cifar-10"] = b""
    result = runner.invoke(app, ["submit", "-m", "first try"])
    assert result.exit_code == 0, result.output
    assert "(ref 1001): Successfully submitted to cifar-10" in result.output
