"""The `kaggle` library, authenticated, with its failures turned into one-line errors (fetch and submit)."""
from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import requests

from pipeline.errors import PipelineError

NO_CREDENTIALS = (
    "no Kaggle credentials: save your API token as ~/.kaggle/kaggle.json "
    '({"username": ..., "key": ...}) or set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN)'
)


def kaggle_api():
    """An authenticated KaggleApi; importing `kaggle` prints sign-in help that this replaces by one line."""
    with contextlib.redirect_stdout(io.StringIO()):
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()
        try:
            api.authenticate()
        except SystemExit:
            raise PipelineError(_token_problem() or NO_CREDENTIALS) from None
    return api


def _token_problem() -> str | None:
    """What is wrong with a kaggle.json that is there but did not authenticate; None where there is none."""
    token = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle") / "kaggle.json"
    if not token.is_file():
        return None
    again = "download the API token again (kaggle.com → Settings → API → Create New Token)"
    try:
        saved = json.loads(token.read_text())
    except (OSError, ValueError) as e:
        return f"{token}: not a readable API token ({str(e).splitlines()[0]}); {again}"
    if not isinstance(saved, dict) or not {"username", "key"} <= saved.keys():
        return f"{token}: lacks its username or key; {again}"
    return None


@contextlib.contextmanager
def kaggle_errors(name: str, retry: str, kind: str = "competition") -> Iterator[None]:
    """Turn the client's HTTP and connection failures into one line naming what to do; `retry` is the
    command, `kind` says whether `name` is a competition, a dataset or a notebook (owner/name)."""
    page = f"https://www.kaggle.com/{'code' if kind == 'notebook' else kind + 's'}/{name}"
    try:
        yield
    except requests.HTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status == 401:
            message = "Kaggle refused the credentials (401): create a new API token at https://www.kaggle.com/settings/api"
        elif status == 403:
            message = (f"Kaggle refused the request (403): accept the competition's rules at {page}/rules, then retry"
                       if kind == "competition" else f"Kaggle refused the request (403): check your access to {page}")
        elif status == 404:
            message = f"no Kaggle {kind} named {name!r} (404): check the name at {page}"
        else:
            message = f"the Kaggle API answered {status or 'an error'} for {name!r}: {str(e).splitlines()[0]}"
        raise PipelineError(message) from None
    except requests.ConnectionError:
        raise PipelineError(
            f"cannot reach the Kaggle API: check your network connection (or proxy) and run `{retry}` again"
        ) from None
