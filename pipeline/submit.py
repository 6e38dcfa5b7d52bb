"""`pipeline submit`: upload a validated submission to the competition through the kaggle library."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.kaggle_api import kaggle_api, kaggle_errors
from pipeline.fetch import DEFAULT_COMPETITION, SAMPLE, fetched_source
from pipeline.competition import read_competition
from pipeline.layout import dataset_classes
from pipeline.submission import validate_submission
from pipeline.workspace import dataset_dir, submissions_dir


@dataclass(frozen=True)
class SubmitResult:
    file: Path
    competition: str
    ref: int
    message: str  # Kaggle's answer


def submit(message: str, file: Path | None = None, competition: str | None = None,
           dataset_root: Path | None = None) -> SubmitResult:
    """Check `file` against dataset/'s sample submission (when present), then submit it as the CLI does, to
    `competition` (default: the one `pipeline fetch` laid out in dataset/, else cifar-10)."""
    file = file or submissions_dir() / "submission.csv"
    dataset_root = dataset_root or dataset_dir()
    fetched = fetched_source(dataset_root)
    if competition and fetched not in (None, SAMPLE, competition) and "/" not in fetched:
        raise PipelineError(f"{dataset_root} holds the competition {fetched!r}, not {competition!r}, whose sample "
                            f"submission {file} must be checked against; submit to {fetched} (leave out "
                            f"--competition), or fetch {competition} first (`pipeline fetch {competition} --force`)")
    competition = competition or submission_target(dataset_root)
    if not message.strip():
        raise PipelineError("-m/--message must describe the submission")
    if file.exists() and not file.is_file():
        raise PipelineError(f"{file}: not a regular file (a folder, device or pipe); name the submission CSV with --file")
    if not file.is_file():
        raise PipelineError(f"{file}: not found; run `pipeline predict` first")
    if file.suffix.lower() != ".csv":
        raise PipelineError(f"{file}: a {file.suffix or 'suffix-less'} file, not a CSV; name the submission CSV with "
                            "--file (e.g. submissions/submission.csv)")
    classes = dataset_classes(dataset_root)
    if classes is not None and (dataset_root / read_competition(dataset_root).sample_submission).is_file():
        validate_submission(file, dataset_root, classes)
    api = kaggle_api()
    with kaggle_errors(competition, "pipeline submit"):
        response = api.competition_submit(str(file), message, competition, quiet=False)
    if response.message == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
        raise PipelineError(f"{file}: the upload to Kaggle failed; run `pipeline submit` again")
    return SubmitResult(file, competition, response.ref, response.message)


def submission_target(dataset_root: Path) -> str:
    """The competition dataset/ was fetched from; cifar-10 when no fetch recorded one."""
    source = fetched_source(dataset_root) or DEFAULT_COMPETITION
    if source == SAMPLE or "/" in source:
        raise PipelineError(f"{dataset_root} holds {'the offline sample' if source == SAMPLE else f'the dataset {source}'}, "
                            "not a Kaggle competition; name one with --competition")
    return source
