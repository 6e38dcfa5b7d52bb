"""The fixed directories of a project folder, and writes that never leave half a file behind."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import PipelineError


def dataset_dir() -> Path:
    return Path.cwd() / "dataset"


def weights_dir() -> Path:
    return Path.cwd() / "weights"


def submissions_dir() -> Path:
    return Path.cwd() / "submissions"


def user_cache_dir() -> Path:
    """$PIPELINE_CACHE_DIR, else $XDG_CACHE_HOME/pipeline, else ~/.cache/pipeline: measurements, and the decoded
    images of a dataset/ that cannot be written."""
    return Path(os.environ.get("PIPELINE_CACHE_DIR")
                or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pipeline")


@contextlib.contextmanager
def created_folder(folder: Path, tidy: bool = True, whole: bool = False) -> Iterator[Path]:
    """Make `folder` (and its parents); should the block fail, remove (`tidy`: one process of several does) what
    it made: its empty folders, or (`whole`: nothing in it is worth keeping then) all of it. A folder that cannot
    be made is one line."""
    existed = folder.exists()
    if folder.is_symlink() and not existed:
        raise PipelineError(f"{folder}: a symlink to {os.readlink(folder)}, which does not exist; fix or remove it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        blocked = next((path for path in (folder, *folder.parents) if path.exists() and not path.is_dir()), None)
        if blocked is not None:
            raise PipelineError(f"{blocked}: a file where a folder belongs; move it aside") from None
        raise PipelineError(f"{folder}: cannot create it ({e.strerror or e}); work from a folder you can write") from None
    try:
        yield folder
    except BaseException:
        if tidy and not existed and whole:
            shutil.rmtree(folder, ignore_errors=True)
        elif tidy and not existed:  # a failed run keeps its checkpoints (to resume): only empty folders go
            for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True) + [folder]:
                with contextlib.suppress(OSError):
                    path.rmdir()
        raise


def write_failure(path: Path, error: BaseException) -> PipelineError:
    """One line for a write that failed (disk full, read-only folder, a file where a folder belongs, …): the earlier
    file is untouched."""
    blocking = next((folder for folder in path.parents if folder.exists() and not folder.is_dir()), None)
    if blocking is not None:
        return PipelineError(f"{path}: cannot write it: {blocking} is a file where a folder belongs; move it aside, "
                             "then go on")
    reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[-1] or type(error).__name__
    known = next((text for text in ("Read-only file system", "Permission denied", "No space left on device")
                  if text in str(error)), None)  # torch's writer wraps the OS error in C++ text
    with contextlib.suppress(OSError):
        if known is None and shutil.disk_usage(path.parent).free < 1 << 20:
            known = "No space left on device"
    said = {"Read-only file system": "the file system is read-only; make the folder writable",
            "Permission denied": "permission denied; make the folder writable",
            "No space left on device": "no space left on the device; make room"}
    reason = f"{said[known]}, then go on" if known else reason
    return PipelineError(f"{path}: cannot write it: {reason}; any earlier version of it is intact")


def check_replaceable(path: Path) -> None:
    """`path` is a file, or nothing yet: a folder, device or pipe there is one line (checked before the files written
    with it, so that none of them is written alone)."""
    if path.exists() and not path.is_file():
        raise PipelineError(f"{path}: not a regular file (a folder, device or pipe), so it is not replaced; "
                            "move it aside, or name another file to write")


def check_folder(path: Path) -> Path:
    """`path` is a folder of its own, or nothing yet: a file there is one line (before a library's mkdir raises on
    it), and so is a link (its writes would land in the folder it points at, another run's)."""
    if path.is_symlink():
        raise PipelineError(f"{path}: a link to {os.readlink(path)}, whose files would be written through it; replace "
                            "it by a folder of its own")
    if path.exists() and not path.is_dir():
        raise PipelineError(f"{path}: a file where a folder belongs; move it aside")
    return path


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.
    A failed write (OSError) is a one-line error, and leaves no temporary file."""
    if path.is_symlink():  # a link's target is written, the link kept: only a target of the link's own name
        target = path.resolve()
        if target.name != path.name:
            raise PipelineError(f"{path}: a link to {target}, a file of another name, which is never written "
                                f"through; remove the link, or point it at a file named {path.name}")
        path = target
    check_replaceable(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        raise write_failure(path, e) from None
    finally:
        with contextlib.suppress(OSError):  # already gone, or a read-only folder where it never existed
            tmp.unlink()


def link_atomic(source: Path, path: Path) -> None:
    """`path` becomes the file `source` is, atomically: a hard link, or a copy where the file system has none."""
    with atomic_path(path) as tmp:
        tmp.unlink(missing_ok=True)  # a leftover of a killed process with this pid
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: Path) -> object:
    """`path`'s JSON, each object's keys given once: a key given twice is a ValueError (json would keep the last
    without a word, and a hand-edited file would mean what its reader did not see)."""
    return json.loads(path.read_text(), object_pairs_hook=_unique_keys)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise ValueError(f"{', '.join(twice)} given twice; keep one")
    return dict(pairs)
