"""The fixed directories of a project folder, and writes that never leave half a file behind."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def dataset_dir() -> Path:
    return Path.cwd() / "dataset"


def weights_dir() -> Path:
    return Path.cwd() / "weights"


def submissions_dir() -> Path:
    return Path.cwd() / "submissions"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
