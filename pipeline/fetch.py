"""`pipeline fetch`: download a competition with the kaggle library and lay it out under dataset/.

Everything is extracted into a staging folder inside dataset/, checked, and only then moved into
place, followed by a completion marker; an interrupted fetch leaves no marker and is redone.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from rich.console import Console

from pipeline.cache import CACHE_DIR, cached_test_images, cached_train_images
from pipeline.convert import convert_pixel_competition, convert_pixel_dataset, is_pixel_competition
from pipeline.errors import PipelineError, listed
from pipeline.kaggle_api import kaggle_api, kaggle_errors
from pipeline.competition import (DESCRIPTION, SAMPLE_SUBMISSION, SOLUTION, TRAIN_LABELS, Competition,
                                  infer_competition, read_competition, write_competition)
from pipeline.layout import check_test, check_train
from pipeline.sample import write_sample
from pipeline.workspace import check_replaceable, created_folder, dataset_dir, write_text_atomic

DEFAULT_COMPETITION = "cifar-10"
SAMPLE = "sample"
MARKER = ".complete.json"
DOWNLOADS = ".download"
STAGING_PREFIX = ".staging-"
LAYOUT = ("train", "test", TRAIN_LABELS, SAMPLE_SUBMISSION, SOLUTION, DESCRIPTION)


@dataclass(frozen=True)
class FetchResult:
    root: Path
    source: str
    train_images: int
    test_images: int
    already_complete: bool
    notes: list[str] = field(default_factory=list)  # the choices made in describing the competition


def fetch(competition: str | None = None, archive: Path | None = None, sample: bool = False,
          force: bool = False, root: Path | None = None, dataset: str | None = None,
          limits: ExtractLimits | None = None, img_size: int | None = None,
          label_columns: tuple[str, ...] = ()) -> FetchResult:
    """Lay out `competition` (default: the `archive`'s name without .zip, as Kaggle names its downloads, else
    cifar-10), the Kaggle `dataset` (owner/name, pixel CSVs) or the offline sample under `root` (default
    ./dataset), its images decoded once at `img_size`² when given (else as described), its training CSV's
    `label_columns` those given (else inferred); archives beyond `limits` are refused."""
    limits = limits or ExtractLimits()
    root = root or dataset_dir()
    if img_size is not None and not 8 <= img_size <= 1024:
        raise PipelineError(f"--img-size must be between 8 and 1024 pixels, got {img_size}")
    if dataset is not None and dataset.count("/") != 1:
        raise PipelineError(f"--dataset {dataset!r}: expected owner/name, e.g. zalando-research/fashionmnist")
    if dataset is not None and (sample or competition is not None):
        raise PipelineError("--dataset replaces --competition and --sample: give only one of them")
    if sample and (archive is not None or competition is not None):
        raise PipelineError("--sample writes the offline sample: give it without --archive or --competition")
    if label_columns and (sample or dataset is not None):
        raise PipelineError("--label-column names a column of a competition's training CSV; --sample and --dataset "
                            "have their labels described: give it without them")
    if competition is None and archive is not None and dataset is None:
        competition = _source_of_archive(root, archive) or archive_competition(archive)
    competition = competition or DEFAULT_COMPETITION
    source = SAMPLE if sample else dataset or competition
    with created_folder(root, whole=True):  # a failed first fetch leaves no dataset/ (nor caches) behind
        result = _lay_out(root, source, competition, archive, sample, force, dataset, limits, img_size, label_columns)
    if result.already_complete and label_columns:
        _check_label_columns(root, label_columns)
    if result.already_complete and img_size is not None:
        result = replace(result, notes=_set_image_size(root, img_size))
    return result


def archive_competition(archive: Path) -> str:
    """The competition a hand-downloaded zip holds, by its name: `kaggle competitions download -c NAME` writes
    NAME.zip (a copy such as `NAME (1).zip` is NAME too)."""
    return re.sub(r"\s*\(\d+\)$", "", archive.name[:-4] if archive.name.lower().endswith(".zip") else archive.stem)


def _source_of_archive(root: Path, archive: Path) -> str | None:
    """The competition the last fetch recorded for this very zip (fetches before zips were named after their
    competition recorded cifar-10), so the same command finds its layout complete."""
    recorded = _recorded_archive(root)
    return fetched_source(root) if recorded is not None and Path(recorded).resolve() == archive.resolve() else None


def _check_label_columns(root: Path, label_columns: tuple[str, ...]) -> None:
    """The complete fetch in `root` reads `label_columns` (--label-column) as its labels, else one line: a fetch
    describes the competition once."""
    described = read_competition(root).label_columns
    if described != label_columns:
        raise PipelineError(f"{root / DESCRIPTION}: reads the labels from {listed(described, 5)}, not "
                            f"{listed(label_columns, 5)}; fetch again with --force and --label-column to read those")


def _lay_out(root: Path, source: str, competition: str, archive: Path | None, sample: bool, force: bool,
             dataset: str | None, limits: ExtractLimits, img_size: int | None,
             label_columns: tuple[str, ...]) -> FetchResult:
    if not force:
        done = _complete_fetch(root, source, archive)
        if done:
            return done
    check_replaceable(root / MARKER)  # before anything is staged: its record is written last
    _remove_stale_staging(root)
    staging = root / f"{STAGING_PREFIX}{os.getpid()}"
    staging.mkdir()
    try:
        if sample:
            write_sample(staging)
            origin = "the offline sample"
        elif dataset is not None:
            zip_path = archive if archive is not None else download(dataset, root / DOWNLOADS, force, kind="dataset")
            origin = str(zip_path)
            raw = staging / ".raw"
            with _downloads_checked(zip_path, downloaded=archive is None):
                extract_zip(zip_path, raw, limits)
            convert_pixel_dataset(raw, staging, dataset)
            shutil.rmtree(raw)
        else:
            zip_path = archive if archive is not None else download(competition, root / DOWNLOADS, force)
            origin = str(zip_path)
            with _downloads_checked(zip_path, downloaded=archive is None):
                extract_competition(zip_path, staging, limits)
            if is_pixel_competition(staging):
                with _named_after(staging, origin):
                    convert_pixel_competition(staging, competition)
        with _named_after(staging, origin):
            notes = _described(staging, not sample and dataset is None, img_size, label_columns)
            shown = Console(file=_ShownAt(staging, root), soft_wrap=True)  # unwrapped: its paths whole, to replace
            train_data, test_ids = _decoded(staging, root / CACHE_DIR, shown)
            notes += [f"label spellings: {note}" for note in train_data.notes]  # as train says them
        laid_out = _move_into_place(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_text_atomic(root / MARKER, json.dumps({
        "source": source,
        "archive": str(archive) if archive else None,
        "train_images": len(train_data.ids),
        "test_images": len(test_ids),
        "description": _digest(root / DESCRIPTION),
        "layout": laid_out,
        "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, indent=2) + "\n")
    return FetchResult(root, source, len(train_data.ids), len(test_ids), already_complete=False, notes=notes)


def _described(staging: Path, infer: bool, img_size: int | None, label_columns: tuple[str, ...]) -> list[str]:
    """Write the competition's description: inferred from its files (`infer`: a competition's archive, unless it came
    with one, then checked), else CIFAR-10's shape, which the sample and converted datasets are written in; with
    `img_size` (--img-size), every image decoded at that square; with `label_columns` (--label-column), those the
    labels."""
    if infer and (staging / DESCRIPTION).is_file():
        described, notes = read_competition(staging), []
        if label_columns and described.label_columns != label_columns:
            raise PipelineError(f"--label-column: the archive describes its competition in its own {DESCRIPTION}, "
                                f"whose labels are {listed(described.label_columns, 5)}; edit that file instead")
    else:
        described, notes = infer_competition(staging, label_columns) if infer else (Competition(), [])
    if img_size is not None:
        notes.append(_image_size_note(img_size, described.image_size))
        described = replace(described, image_size=img_size)
    write_competition(staging, described)
    return notes


def _image_size_note(size: int, before: int | None) -> str:
    otherwise = "the images' own size" if before is None else before
    return (f"image_size {size} (--img-size; {otherwise} otherwise): every image is decoded once at {size}×{size}, its "
            f"shorter side resized to {size} and the centre cropped")


def _decoded(folder: Path, cache_dir: Path, console: Console) -> tuple:
    """Decode both splits into the cache now, so train and predict start warm (the cache keys survive the move of
    the staged layout); returns the training data and the test ids."""
    train_data, test_ids = check_train(folder), check_test(folder)
    cached_train_images(folder, train_data, console, cache_dir).whole(train_data.image_dir, train_data.image_suffix)
    cached_test_images(folder, test_ids, console, cache_dir)
    return train_data, test_ids


class _ShownAt:
    """Standard output on which the staging folder's path reads as the folder it is moved to (notes on its images
    name files where the user will find them)."""

    def __init__(self, staging: Path, root: Path):
        self.staging, self.root = str(staging), str(root)

    def write(self, text: str) -> int:
        return sys.stdout.write(text.replace(self.staging, self.root))

    def flush(self) -> None:
        sys.stdout.flush()

    def isatty(self) -> bool:
        return sys.stdout.isatty()

    def fileno(self) -> int:
        return sys.stdout.fileno()


def _set_image_size(root: Path, size: int) -> list[str]:
    """--img-size over a complete fetch: the description's image_size becomes `size` (recorded as the fetch's, not as
    an edit) and both splits are decoded at it now."""
    described = read_competition(root)
    if described.image_size == size:
        return []
    write_competition(root, replace(described, image_size=size))
    write_text_atomic(root / MARKER, json.dumps({**_marker(root), "description": _digest(root / DESCRIPTION)},
                                                indent=2) + "\n")
    _decoded(root, root / CACHE_DIR, Console())
    return [_image_size_note(size, described.image_size)]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _edited_description(root: Path) -> bool:
    """The description differs from the one the last fetch wrote (the user edited it)."""
    recorded = _marker(root).get("description")
    try:
        return recorded is not None and _digest(root / DESCRIPTION) != recorded
    except OSError:
        return False


@contextlib.contextmanager
def _downloads_checked(zip_path: Path, downloaded: bool) -> Iterator[None]:
    """A corrupt or incomplete download is deleted, so the next fetch downloads it anew instead of trusting it."""
    try:
        yield
    except CorruptArchive as e:
        if not downloaded:
            raise PipelineError(f"{e}; download it again") from None
        zip_path.unlink(missing_ok=True)
        raise PipelineError(f"{e}; deleted it: run `pipeline fetch` again to download it anew") from None


@contextlib.contextmanager
def _named_after(staging: Path, source: str) -> Iterator[None]:
    """Problems found in the staging folder are reported against what was fetched, not the temp folder."""
    try:
        yield
    except PipelineError as e:
        raise PipelineError(str(e).replace(str(staging), source)) from None


def _check_layout(root: Path) -> tuple[int, int]:
    return len(check_train(root).ids), len(check_test(root))


def _marker(root: Path) -> dict:
    """What the last finished fetch into `root` recorded ({} when nothing readable was)."""
    try:
        recorded = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def fetched_source(root: Path) -> str | None:
    """What the last finished fetch into `root` laid out: a competition's name, owner/name of a dataset, or
    `sample`; None when nothing (readable) was recorded."""
    source = _marker(root).get("source")
    return source if isinstance(source, str) else None


def refetch_command(root: Path, option: str) -> str:
    """The command that redoes the last fetch into `root` with `option` (over that complete fetch: nothing is
    downloaded again)."""
    source = fetched_source(root)
    named = ("" if source is None else " --sample" if source == "sample" else
             f" --dataset {source}" if "/" in source else f" --competition {source}")
    return f"pipeline fetch{named} {option}"


def _complete_fetch(root: Path, source: str, archive: Path | None) -> FetchResult | None:
    """The existing layout, if a finished fetch of `source` (from `archive`, when given) left it intact; refuses to
    replace another."""
    previous = fetched_source(root)
    if previous is None:
        return None
    if previous != source:
        raise PipelineError(f"{root} holds {previous!r}; pass --force to replace it with {source!r}")
    recorded = _recorded_archive(root)
    if archive is not None and (recorded is None or Path(recorded).resolve() != archive.resolve()):
        raise PipelineError(f"{root} holds {previous!r} from {recorded or 'the Kaggle API'}; pass --force to replace "
                            f"it with {archive}")
    try:
        counts = _check_layout(root)
    except PipelineError as e:
        if _edited_description(root):  # an edit's mistake is the user's to fix, not a reason to replace the edit
            raise PipelineError(f"{e} ({DESCRIPTION} was edited after the fetch: fix it, or fetch again with --force to "
                                "describe the competition anew)") from None
        return None  # damaged since: fetch again
    return FetchResult(root, source, *counts, already_complete=True)


def _recorded_archive(root: Path) -> str | None:
    """The archive the last finished fetch laid out (None: a download through the API, or no readable record)."""
    recorded = _marker(root).get("archive")
    return recorded if isinstance(recorded, str) else None


def _remove_stale_staging(root: Path) -> None:
    for leftover in root.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _move_into_place(staging: Path, root: Path) -> list[str]:
    """Replace the previous layout by the staged one; the marker goes first and comes back last. Returns the names
    laid out (the marker records them, so the next fetch replaces them all)."""
    previous = _previous_names(root)
    (root / MARKER).unlink(missing_ok=True)
    trash = staging / ".replaced"
    trash.mkdir()
    staged = [entry.name for entry in staging.iterdir() if entry != trash]
    for name in set(LAYOUT) | set(staged) | previous:
        if (root / name).exists():
            os.replace(root / name, trash / name)
    for name in staged:
        os.replace(staging / name, root / name)
    return sorted(staged)


def _previous_names(root: Path) -> set[str]:
    """The top-level files and folders of the previous layout: those its marker records and those its description
    names (never a hidden one: the caches and downloads stay)."""
    recorded = _marker(root).get("layout", [])
    names = {n for n in recorded if isinstance(n, str)} if isinstance(recorded, list) else set()
    try:
        old = read_competition(root)
        names |= {PurePosixPath(p).parts[0] for p in (old.labels_csv, old.sample_submission, old.train_images,
                                                        old.test_images) if p}
    except PipelineError:
        pass
    return {n for n in names if n and "/" not in n and not n.startswith(".")}


# --- download -------------------------------------------------------------------------------------

def download(name: str, dest: Path, force: bool = False, kind: str = "competition") -> Path:
    """Download a competition's zip (or a dataset's, `kind="dataset"`, name owner/slug) into `dest` with
    the kaggle library; returns its path. The client skips an up-to-date file and resumes a partial one
    unless `force` is set."""
    api = kaggle_api()
    dest.mkdir(parents=True, exist_ok=True)
    download_files = api.competition_download_files if kind == "competition" else api.dataset_download_files
    try:
        with kaggle_errors(name, "pipeline fetch", kind):
            download_files(name, path=str(dest), force=force, quiet=False)
    except (OSError, ValueError) as e:
        raise PipelineError(f"download of {name!r} did not complete ({e}); run `pipeline fetch` again to resume") from None
    archive = dest / f"{name.split('/')[-1]}.zip"
    if not archive.is_file():
        raise PipelineError(f"the Kaggle API sent no zip for {name!r} (expected {archive})")
    return archive


# --- extraction -----------------------------------------------------------------------------------

class CorruptArchive(PipelineError):
    """An archive that cannot be read to the end: a download is deleted so that the next fetch gets it anew."""


def limit_setting(variable: str, default: float) -> float:
    """A positive number from the environment (e.g. PIPELINE_MAX_EXTRACT_GB=1.5), else `default`."""
    text = os.environ.get(variable)
    try:
        value = float(text) if text is not None else default
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise PipelineError(f"{variable}={text!r}: expected a positive number")
    return value


@dataclass(frozen=True)
class ExtractLimits:
    """Bounds against decompression bombs, per archive and for the whole extraction. The 300,000-image
    cifar-10 test set is about 1.3 GB in 300,001 files; the defaults leave ample room."""
    max_bytes: int = field(default_factory=lambda: int(limit_setting("PIPELINE_MAX_EXTRACT_GB", 50) * 2**30))
    max_members: int = field(default_factory=lambda: int(limit_setting("PIPELINE_MAX_MEMBERS", 2_000_000)))

    def check(self, archive: Path, members: int, declared_bytes: int) -> None:
        if members > self.max_members:
            raise PipelineError(f"{archive}: refusing {members:,} members, more than the limit of {self.max_members:,} "
                                f"(a decompression bomb? raise PIPELINE_MAX_MEMBERS if it is genuine)")
        if declared_bytes > self.max_bytes:
            raise PipelineError(f"{archive}: refusing to unpack {declared_bytes / 2**30:.1f} GiB, more than the limit of "
                                f"{self.max_bytes / 2**30:.1f} GiB (a decompression bomb? raise PIPELINE_MAX_EXTRACT_GB if it is genuine)")

    def check_extracted(self, archive: Path, dest: Path) -> None:
        """The bytes actually written, in case an archive's declared sizes lied."""
        written = sum(entry.stat().st_size for entry in _walk_files(dest))
        if written > self.max_bytes:
            raise PipelineError(f"{archive}: unpacked to {written / 2**30:.1f} GiB, more than the limit of "
                                f"{self.max_bytes / 2**30:.1f} GiB; refused")


def _walk_files(folder: Path) -> Iterator[os.DirEntry]:
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk_files(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                yield entry


def _check_member(archive: Path, name: str, is_link: bool) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise PipelineError(f"{archive}: refusing member {name!r}, which points outside the target folder")
    if is_link:
        raise PipelineError(f"{archive}: refusing member {name!r}, which is a link")


OTHER_ARCHIVES = {b"\x1f\x8b": "gzip (.tar.gz)", b"BZh": "bzip2", b"\xfd7zXZ": "xz", b"7z\xbc\xaf\x27\x1c": "7z",
                  b"Rar!": "RAR"}  # by their first bytes


def _not_a_zip(path: Path) -> str | None:
    """The kind of archive `path` is when it is another than a zip (a tar by the mark at byte 257)."""
    try:
        with open(path, "rb") as f:
            head = f.read(262)
    except OSError:
        return None
    kind = next((kind for magic, kind in OTHER_ARCHIVES.items() if head.startswith(magic)), None)
    return kind or ("tar" if head[257:262] == b"ustar" else None)


def extract_zip(path: Path, dest: Path, limits: ExtractLimits | None = None) -> None:
    """Check every member (names, links, sizes, count) before writing anything, then extract; a bad
    CRC or truncated data is detected while extracting."""
    other = _not_a_zip(path)
    if other:
        raise PipelineError(f"{path}: a {other} archive, not a zip; fetch takes a competition's zip as Kaggle serves "
                            "it: unpack it and zip its files (e.g. `zip -r competition.zip train test *.csv`)")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            (limits or ExtractLimits()).check(path, len(members), sum(member.file_size for member in members))
            for member in members:
                member.filename = member.filename.replace("\\", "/")  # Windows tools' separator, which the format forbids
                _check_member(path, member.filename, stat.S_ISLNK(member.external_attr >> 16))
            _check_tree(path, [member.filename for member in members if not member.is_dir()])
            with _files_where_folders_go(path):
                archive.extractall(dest, members)
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise CorruptArchive(f"{path}: corrupt or incomplete zip archive ({e})") from None


def _check_tree(archive: Path, files: list[str]) -> None:
    """No two files of the archive share a path, and none has the name of a folder of another member's path (`train`
    and `train/1.png`)."""
    paths = [str(PurePosixPath(name.strip("/"))) for name in files]
    twice = sorted(name for name, count in Counter(paths).items() if count > 1)
    if twice:
        raise PipelineError(f"{archive}: holds {twice[0]} twice (two members of one path), so which one is meant "
                            "cannot be told; download it again, or repack it with one")
    folders = {str(parent) for name in paths for parent in PurePosixPath(name).parents} - {"."}
    both = sorted(folders & set(paths))
    if both:
        raise PipelineError(f"{archive}: {both[0]} is both a file and a folder in the archive, so it cannot be "
                            "extracted; download it again, or repack it")


@contextlib.contextmanager
def _files_where_folders_go(archive: Path) -> Iterator[None]:
    """A member that lands on a file where a folder is needed (inner archives included): one line."""
    try:
        yield
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as e:
        raise PipelineError(f"{archive}: {Path(e.filename or '?').name} cannot be extracted: a file and a folder "
                            "share a name; download it again, or repack it") from None


def seven_zip() -> str | None:
    """Debian's `7zz` (package 7zip) or a `7z`: about twice as fast as py7zr on Kaggle's test.7z."""
    return shutil.which("7zz") or shutil.which("7z")


def extract_7z(path: Path, dest: Path, limits: ExtractLimits | None = None) -> None:
    """Check every member (names, links, sizes, count) with py7zr, then extract with 7-Zip when
    installed, else py7zr (imported here: an environment without it, like a GPU machine's image, fetches the
    rest)."""
    try:
        import py7zr
    except ImportError:
        raise PipelineError(f"{path}: a 7z archive needs py7zr, which is not installed: `pip install py7zr`, then "
                            "fetch again") from None
    program = seven_zip()
    try:
        with py7zr.SevenZipFile(path) as archive:
            members = archive.files
            (limits or ExtractLimits()).check(path, len(members), sum(member.uncompressed or 0 for member in members))
            for member in members:
                _check_member(path, member.filename, member.is_symlink)
            _check_tree(path, [member.filename for member in members if not member.is_directory])
            if program is None:
                with _files_where_folders_go(path):
                    archive.extractall(dest)
    except (py7zr.exceptions.Bad7zFile, py7zr.exceptions.CrcError, EOFError, lzma.LZMAError) as e:
        raise CorruptArchive(f"{path}: corrupt or incomplete 7z archive ({e})") from None
    if program is not None:
        done = subprocess.run([program, "x", "-y", "-bso0", "-bsp0", f"-o{dest}", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise CorruptArchive(f"{path}: {Path(program).name} could not extract it ({reason})")


EXTRACTORS = {".zip": extract_zip, ".7z": extract_7z}
NESTED_ARCHIVES = 3  # levels of archives inside the competition's zip that fetch unpacks


def _hoist_single_folder(dest: Path) -> None:
    """A zip whose files all sit under one top folder, or a chain of lone folders, ending in one that holds CSVs
    (`cifar-10/trainLabels.csv` as zipping a folder makes; `input/cifar-10/…` as a notebook's folder holds it): that
    folder's contents are the competition."""
    top = dest
    while len(entries := _visible(top)) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        top = entries[0]
        if any(p.suffix.lower() == ".csv" for p in _visible(top)):
            break
    if top == dest or not any(p.suffix.lower() == ".csv" for p in _visible(top)):
        return
    outer = _visible(dest)[0]
    moved = outer.rename(dest / f".top-{os.getpid()}")  # its contents may hold a name like its own
    for entry in (moved / top.relative_to(outer)).iterdir():
        entry.rename(dest / entry.name)
    shutil.rmtree(moved)


def _visible(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name != "__MACOSX" and not p.name.startswith(".")]


def extract_competition(zip_path: Path, dest: Path, limits: ExtractLimits | None = None) -> None:
    """Extract a Kaggle competition zip, then the archives inside it (`train.7z`, `test.7z`)."""
    limits = limits or ExtractLimits()
    if not zip_path.is_file():
        raise PipelineError(f"{zip_path}: archive not found")
    extract_zip(zip_path, dest, limits)
    _drop_macos_metadata(dest)
    for _ in range(NESTED_ARCHIVES):  # an inner archive may hold the archives (the competition's zip zipped again)
        _hoist_single_folder(dest)
        inners = sorted(p for p in dest.iterdir() if p.suffix in EXTRACTORS)
        for inner in inners:
            unpacked, named = dest / f".{inner.name}-{os.getpid()}", f"{zip_path}'s {inner.name}"
            try:
                EXTRACTORS[inner.suffix](inner, unpacked, limits)
            except PipelineError as e:  # named as the user's archive holds it, not by its temporary place
                raise type(e)(str(e).replace(str(inner), named, 1)) from None
            _drop_macos_metadata(unpacked)
            _merge_unpacked(unpacked, dest, named, dest)
            inner.unlink()
        limits.check_extracted(zip_path, dest)
        if not inners:
            return


APPLE_DOUBLE = b"\x00\x05\x16\x07"  # the first bytes of a macOS resource-fork file (`._1.png`)


def _drop_macos_metadata(folder: Path) -> None:
    """Remove what macOS adds to the archives it makes: `__MACOSX/` and the `._<name>` resource-fork files beside the
    real ones (which would read as images, or as archives to unpack)."""
    shutil.rmtree(folder / "__MACOSX", ignore_errors=True)
    for entry in list(_walk_files(folder)):
        if entry.name.startswith("._"):
            with open(entry.path, "rb") as f:
                if f.read(4) == APPLE_DOUBLE:
                    os.unlink(entry.path)


def _merge_unpacked(unpacked: Path, dest: Path, inner: str, top: Path) -> None:
    """Move what an `inner` archive unpacked into `dest`, refusing a file the competition's archive (or another inner
    archive) already put there: which of the two is meant cannot be told."""
    for entry in unpacked.iterdir():
        target = dest / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir() and not target.is_symlink():
            _merge_unpacked(entry, target, inner, top)
        elif target.exists() or target.is_symlink():
            raise PipelineError(f"{inner} holds {target.relative_to(top)}, which the archive also holds beside it, so "
                                "which one is meant cannot be told; download it again, or repack it with one")
        else:
            entry.rename(target)
    unpacked.rmdir()
