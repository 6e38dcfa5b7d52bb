"""`pipeline package --push`: a package's two datasets created on Kaggle (or given a new version) and its notebook
pushed, through the kaggle library; then the notebook's run followed until it ends, and its output and log
downloaded into the package's output/. Every failure is one line: a refused upload, a slug taken, a quota, a run
that failed with the last lines of its log."""
from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import requests

from pipeline.errors import PipelineError
from pipeline.kaggle_api import kaggle_api, kaggle_errors
from pipeline.package import package_classes
from pipeline.submission import validate_submission

ENDED = ("complete", "error", "cancel_acknowledged")


@dataclass(frozen=True)
class Pushed:
    datasets: list[str]  # what happened to each: "created owner/slug" or "new version of owner/slug"
    kernel: str  # owner/slug
    version: int | None
    url: str
    status: str  # how the run ended: complete, error, …
    output: Path  # the run's files and log, downloaded
    files: list[Path]


def push(package: Path, dataset_root: Path, poll_s: float = 30.0, timeout_s: float = 10 * 3600,
         report: Callable[[str], None] = print) -> Pushed:
    """Publish `package` and follow its notebook's run for up to `timeout_s`, polling every `poll_s` seconds; the
    submission it wrote is checked against `dataset_root`'s sample submission (the public test set it ran on)."""
    api = kaggle_api()
    datasets = [_publish_dataset(api, package / name) for name in ("wheels", "weights")]
    for line in datasets:
        report(line)
    kernel_folder = package / "notebook"
    kernel = json.loads((kernel_folder / "kernel-metadata.json").read_text())["id"]
    with kaggle_errors(kernel, "pipeline package … --push", kind="notebook"), _client_refusals(kernel_folder):
        saved = api.kernels_push(str(kernel_folder))
    refused = saved.error or "; ".join(
        f"{what} {', '.join(names)}" for what, names in (
            ("unknown datasets", saved.invalid_dataset_sources), ("unknown competitions", saved.invalid_competition_sources))
        if names)
    if refused:
        raise PipelineError(f"{kernel_folder}: Kaggle refused the notebook: {refused}")
    report(f"pushed {kernel} version {saved.version_number}: {saved.url}; its run follows")
    status, failure = _follow(api, kernel, poll_s, timeout_s, report)
    output = package / "output"
    shutil.rmtree(output, ignore_errors=True)  # an earlier run's files must not pass for this one's
    output.mkdir()
    with kaggle_errors(kernel, "pipeline package … --push", kind="notebook"), _client_refusals(kernel_folder):
        files = [Path(path) for path in api.kernels_output(kernel, path=str(output))[0]]
    if status != "complete":
        raise PipelineError(f"{kernel}: its run ended {status}" + (f" ({failure})" if failure else "")
                            + f"; the log's last lines: {last_lines(output / (kernel.split('/')[1] + '.log'))}")
    submission = output / "submission.csv"
    if not submission.is_file():
        raise PipelineError(f"{kernel}: its run wrote no submission.csv; the log's last lines: "
                            f"{last_lines(output / (kernel.split('/')[1] + '.log'))}")
    validate_submission(submission, dataset_root, package_classes(package / "weights"))
    return Pushed(datasets, kernel, saved.version_number, saved.url, status, output, files)


def _publish_dataset(api, folder: Path) -> str:
    """Create the dataset `folder` holds, or give it a new version when it exists; what happened, in words."""
    ref = json.loads((folder / "dataset-metadata.json").read_text())["id"]
    with kaggle_errors(ref, "pipeline package … --push", kind="dataset"), _client_refusals(folder):
        try:
            api.dataset_status(ref)
            exists = True
        except requests.HTTPError as e:
            if e.response is None or e.response.status_code != 404:
                raise
            exists = False
        notes = f"pipeline package, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
        made = (api.dataset_create_version(str(folder), version_notes=notes, quiet=True, dir_mode="zip") if exists
                else api.dataset_create_new(str(folder), public=False, quiet=True, dir_mode="zip"))
    if made.error or (made.status or "").lower() == "error":
        raise PipelineError(f"{folder}: Kaggle refused the dataset {ref}: {made.error or made.status}")
    return f"{'new version of' if exists else 'created'} {ref}"


@contextlib.contextmanager
def _client_refusals(what: Path | str) -> Iterator[None]:
    """The client's own refusals (ValueError: a metadata field it rejects, an upload it gave up, a notebook it may
    not access) as one line naming `what`."""
    try:
        yield
    except ValueError as e:
        raise PipelineError(f"{what}: the kaggle client refused it: {e}") from None


def _follow(api, kernel: str, poll_s: float, timeout_s: float, report: Callable[[str], None]) -> tuple[str, str]:
    """Poll the kernel's run until it ends: its status (complete, error, …) and failure message."""
    deadline, last = time.monotonic() + timeout_s, None
    while True:
        with kaggle_errors(kernel, "pipeline package … --push", kind="notebook"), _client_refusals(kernel):
            answer = api.kernels_status(kernel)
        status = getattr(answer.status, "name", str(answer.status)).lower()
        if status != last:
            report(f"{kernel}: {status}")
            last = status
        if status in ENDED:
            return status, answer.failure_message or ""
        if time.monotonic() > deadline:
            raise PipelineError(f"{kernel}: still {status} after {timeout_s / 3600:g} h; follow it on Kaggle")
        time.sleep(poll_s)


def last_lines(log: Path, count: int = 3) -> str:
    """The last lines of a Kaggle run's log (a JSON list of {"data": …} entries, or plain text)."""
    if not log.is_file():
        return "(no log)"
    text = log.read_text(errors="replace")
    try:
        text = "".join(entry.get("data", "") for entry in json.loads(text))
    except (ValueError, AttributeError, TypeError):
        pass
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "(empty log)"
