"""Decoded-image caches: a folder of PNGs decoded once, in parallel, into a uint8 `.npy` memory map.

The cache `dataset/.cache/<split>.npy` holds (N, H, W, C) uint8 in the order of the ids it was built
for, C = 1 when the first image is greyscale and 3 otherwise (every image is converted to that); `<split>.json` beside it records a fingerprint of those ids and of each file's size and
modification time, so any added, removed or rewritten image rebuilds it.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline.errors import PipelineError
from pipeline.layout import LabeledImages, id_sort_key
from pipeline.workspace import atomic_path, write_text_atomic

CACHE_DIR = ".cache"  # under dataset/
CHUNK = 2000  # images per decode task
SHOWN = 3


def fingerprint(folder: Path, ids: list[str]) -> str:
    digest = hashlib.sha256()
    for image_id in ids:
        try:
            info = os.stat(folder / f"{image_id}.png")
        except FileNotFoundError:
            raise PipelineError(f"{folder / f'{image_id}.png'}: image not found") from None
        digest.update(f"{image_id}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _decode_chunk(folder: str, ids: list[str], start: int, out_path: str, size: tuple[int, int]) -> list[str]:
    """Decode `ids` into rows start… of the memory map; returns the problems found."""
    out = np.load(out_path, mmap_mode="r+")
    mode = "L" if out.shape[-1] == 1 else "RGB"
    problems = []
    for offset, image_id in enumerate(ids):
        path = Path(folder) / f"{image_id}.png"
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert(mode))
        except (OSError, SyntaxError, ValueError) as e:
            problems.append(f"{path.name} ({e})")
            continue
        if pixels.shape[:2] != size:
            problems.append(f"{path.name} is {pixels.shape[1]}×{pixels.shape[0]}, not {size[1]}×{size[0]}")
            continue
        out[start + offset] = pixels.reshape(out.shape[1:])
    out.flush()
    return problems


def _first_shape(folder: Path, image_id: str) -> tuple[int, int, int]:
    """Height, width and channels (1 for a greyscale image, else 3) of the first image."""
    path = folder / f"{image_id}.png"
    try:
        with Image.open(path) as image:
            return image.height, image.width, 1 if image.mode in GREY_MODES else 3
    except OSError as e:
        raise PipelineError(f"{path}: not a readable image ({e})") from None


def decoded_images(folder: Path, ids: list[str], cache_file: Path, console: Console | None = None,
                   workers: int | None = None) -> np.ndarray:
    """The images `folder/<id>.png` as a read-only (N, H, W, C) uint8 memory map, decoding only when stale."""
    console = console or Console()
    key = fingerprint(folder, ids)
    meta_file = cache_file.with_suffix(".json")
    if cache_file.is_file() and meta_file.is_file():
        try:
            if json.loads(meta_file.read_text()).get("key") == key:
                return np.load(cache_file, mmap_mode="r")
        except ValueError:
            pass  # unreadable metadata or array: rebuild
    height, width, channels = _first_shape(folder, ids[0])
    workers = workers or os.cpu_count() or 1
    problems: list[str] = []
    meta_file.unlink(missing_ok=True)
    with atomic_path(cache_file) as tmp:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(ids), height, width, channels)).flush()
        chunks = [(str(folder), ids[k:k + CHUNK], k, str(tmp), (height, width)) for k in range(0, len(ids), CHUNK)]
        columns = (TextColumn(f"decoding {folder.name}/"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
            task = progress.add_task("decode", total=len(ids))
            if len(chunks) == 1 or workers == 1:
                for chunk in chunks:
                    problems += _decode_chunk(*chunk)
                    progress.advance(task, len(chunk[1]))
            else:
                with ProcessPoolExecutor(min(workers, len(chunks))) as pool:
                    futures = {pool.submit(_decode_chunk, *chunk): len(chunk[1]) for chunk in chunks}
                    for future in as_completed(futures):
                        problems += future.result()
                        progress.advance(task, futures[future])
        if problems:
            more = f" and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
            raise PipelineError(f"{folder}: {len(problems)} image(s) cannot be used: {'; '.join(problems[:SHOWN])}{more}")
    write_text_atomic(meta_file, json.dumps({"key": key, "images": len(ids), "height": height, "width": width,
                                           "channels": channels}) + "\n")
    console.print(f"decoded {len(ids)} images of {folder} into {cache_file}")
    return np.load(cache_file, mmap_mode="r")


def cached_train_images(root: Path, data: LabeledImages, console: Console | None = None,
                        cache_dir: Path | None = None) -> np.ndarray:
    """`data`'s images as uint8 (N, H, W, C), decoded once into `cache_dir` (default dataset/.cache)."""
    return decoded_images(data.image_dir, data.ids, (cache_dir or root / CACHE_DIR) / "train.npy", console)


def cached_test_images(root: Path, test_ids: list[str], console: Console | None = None,
                       cache_dir: Path | None = None) -> tuple[list[str], np.ndarray]:
    """`test_ids` (from `check_test`) in id order and their images as uint8 (N, H, W, C), decoded once."""
    ids = sorted(test_ids, key=id_sort_key)
    return ids, decoded_images(root / "test", ids, (cache_dir or root / CACHE_DIR) / "test.npy", console)
