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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console

from pipeline.errors import PipelineError
from pipeline.layout import LabeledImages, id_sort_key, problems_message
from pipeline.progress import progress_bar
from pipeline.workspace import atomic_path, write_text_atomic

CACHE_DIR = ".cache"  # under dataset/
CHUNK = 2000  # images per decode task


def fingerprint(folder: Path, ids: list[str]) -> str:
    """A digest of the ids and each image's size and modification time (paths as plain strings: pathlib's
    per-path overhead doubled the cost; 1.2 s for 300,000 test images on the H100 machine)."""
    digest = hashlib.sha256()
    base = os.fspath(folder)
    for image_id in ids:
        try:
            info = os.stat(f"{base}/{image_id}.png")
        except FileNotFoundError:
            raise PipelineError(f"{folder / f'{image_id}.png'}: image not found") from None
        digest.update(f"{image_id}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
FIRST_TRIES = 100  # images tried for the set's shape before giving up


def _decode_chunk(folder: str, ids: list[str], start: int, out_path: str, size: tuple[int, int]) -> dict[str, str]:
    """Decode `ids` into rows start… of the memory map; returns {id: problem} for the images not used."""
    out = np.load(out_path, mmap_mode="r+")
    grey_set = out.shape[-1] == 1
    problems = {}
    for offset, image_id in enumerate(ids):
        path = Path(folder) / f"{image_id}.png"
        try:
            with Image.open(path) as image:
                grey = image.mode in GREY_MODES
                pixels = np.asarray(image.convert("L" if grey_set else "RGB"))
        except (OSError, SyntaxError, ValueError) as e:
            reason = str(e).replace(f"'{path}'", "").replace(str(path), "").strip() or type(e).__name__
            problems[image_id] = f"not a readable image ({reason})"
            continue
        if grey != grey_set:
            problems[image_id] = (f"is {'greyscale' if grey else 'colour'} ({image.mode}) in a "
                                  f"{'greyscale' if grey_set else 'colour'} set")
        elif pixels.shape[:2] != size:
            problems[image_id] = f"is {pixels.shape[1]}×{pixels.shape[0]}, not {size[1]}×{size[0]} like the set"
        else:
            out[start + offset] = pixels.reshape(out.shape[1:])
    out.flush()
    return problems


def _set_shape(folder: Path, ids: list[str]) -> tuple[int, int, int]:
    """Height, width and channels (1 for greyscale, else 3) of the set: those of its first readable image."""
    for image_id in ids[:FIRST_TRIES]:
        try:
            with Image.open(folder / f"{image_id}.png") as image:
                image.load()
                return image.height, image.width, 1 if image.mode in GREY_MODES else 3
        except (OSError, SyntaxError, ValueError):
            continue
    raise PipelineError(f"{folder}: none of the first {min(len(ids), FIRST_TRIES)} images is readable")


@dataclass(frozen=True)
class DecodedImages:
    images: np.ndarray  # read-only (N, H, W, C) uint8 memory map; rows of unusable images are zero
    bad: dict[str, str]  # id -> why its image is not used

    def whole(self, folder: Path) -> np.ndarray:
        """The images of a set that must be complete: any unusable image is an error listing them."""
        if self.bad:
            raise PipelineError(problems_message(folder, image_problems(folder, self.bad), "images",
                                                 "Fix or replace them (fetch again for a downloaded competition)."))
        return self.images


def decode_images(folder: Path, ids: list[str], cache_file: Path, console: Console | None = None,
                  workers: int | None = None) -> DecodedImages:
    """The images `folder/<id>.png` as a uint8 memory map and the ones that cannot be used, decoding only
    when the cache is stale (its metadata keeps the list of unusable images)."""
    console = console or Console()
    key = fingerprint(folder, ids)
    meta_file = cache_file.with_suffix(".json")
    if cache_file.is_file() and meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text())
            if meta.get("key") == key and "bad" in meta:
                return DecodedImages(np.load(cache_file, mmap_mode="r"), meta["bad"])
        except ValueError:
            pass  # unreadable metadata or array: rebuild
    height, width, channels = _set_shape(folder, ids)
    workers = workers or os.cpu_count() or 1
    bad: dict[str, str] = {}
    meta_file.unlink(missing_ok=True)
    with atomic_path(cache_file) as tmp:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(ids), height, width, channels)).flush()
        chunks = [(str(folder), ids[k:k + CHUNK], k, str(tmp), (height, width)) for k in range(0, len(ids), CHUNK)]
        with progress_bar(console, f"decoding {folder.name}/", len(ids)) as advance:
            if len(chunks) == 1 or workers == 1:
                for chunk in chunks:
                    bad |= _decode_chunk(*chunk)
                    advance(len(chunk[1]))
            else:
                with ProcessPoolExecutor(min(workers, len(chunks))) as pool:
                    futures = {pool.submit(_decode_chunk, *chunk): len(chunk[1]) for chunk in chunks}
                    for future in as_completed(futures):
                        bad |= future.result()
                        advance(futures[future])
    bad = {image_id: bad[image_id] for image_id in ids if image_id in bad}  # in id order
    write_text_atomic(meta_file, json.dumps({"key": key, "images": len(ids), "height": height, "width": width,
                                             "channels": channels, "bad": bad}) + "\n")
    console.print(f"decoded {len(ids)} images of {folder} into {cache_file}"
                  + (f" ({len(bad)} unusable)" if bad else ""))
    return DecodedImages(np.load(cache_file, mmap_mode="r"), bad)


def image_problems(folder: Path, bad: dict[str, str]) -> list[str]:
    return [f"{folder.name}/{image_id}.png: {why}" for image_id, why in bad.items()]


def decode_whole_set(folder: Path, ids: list[str], cache_file: Path, console: Console | None = None,
                   workers: int | None = None) -> np.ndarray:
    """`decode_images` for a set that must be whole (the test set)."""
    return decode_images(folder, ids, cache_file, console, workers).whole(folder)


def cached_train_images(root: Path, data: LabeledImages, console: Console | None = None,
                        cache_dir: Path | None = None) -> DecodedImages:
    """`data`'s images as uint8 (N, H, W, C) and the unusable ones, decoded once into `cache_dir`
    (default dataset/.cache)."""
    return decode_images(data.image_dir, data.ids, (cache_dir or root / CACHE_DIR) / "train.npy", console)


def cached_test_images(root: Path, test_ids: list[str], console: Console | None = None,
                       cache_dir: Path | None = None) -> tuple[list[str], np.ndarray]:
    """`test_ids` (from `check_test`) in id order and their images as uint8 (N, H, W, C), decoded once."""
    ids = sorted(test_ids, key=id_sort_key)
    return ids, decode_whole_set(root / "test", ids, (cache_dir or root / CACHE_DIR) / "test.npy", console)
