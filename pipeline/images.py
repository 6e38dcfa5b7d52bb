"""Image files as the pipeline finds them: their suffixes, the header sample that tells a set's sizes and modes, a
folder of class folders, and which way up an image is meant to be seen."""
from __future__ import annotations

import contextlib
import os
import re
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif")
MASK_FOLDERS = ("mask", "masks")  # folder names that are never a class: those of masks (COVID-19 Radiography)
HEADER_SAMPLE = 101  # images, spread over a set, whose headers tell its sizes and modes
READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
# Every image is decoded upright: its EXIF orientation (phone photos: rotated, mirrored) applied by Pillow's
# ImageOps.exif_transpose, as viewers show it. Part of the decoded caches' fingerprint: caches decoded under an
# earlier rule are decoded again. An animated or multi-page image is its first frame, as every image library reads it
# (the cache keeps which images those are, and each stage that reads them says so).
DECODE_RULE = ("exif-orientation applied; 16-bit colour or grey+alpha (PNG, TIFF, JPEG 2000) or signed 8-bit refused; "
               "float up to 1.1 scaled, below -0.1 of its top refused, "
               "up to 2, above 280.5 or not finite refused; integers below 0 or above 65535 refused; 16-bit scaled by "
               "1/257, refused when its pixels reach 1 to 255 only; TIFF grey beyond 8 bits refused when "
               "white-is-zero, signed 16-bit (JPEG 2000 too), of 9-15 bits or a MaxSampleValue below 65535")
EXIF_ORIENTATION = 0x0112
SIDEWAYS = (5, 6, 7, 8)  # the orientations that swap width and height


def orientation(image: Image.Image) -> int:
    """The image's EXIF orientation (1: as stored), read from its header only: a PNG's eXIf chunk after the pixels
    is not looked for (Pillow would decode the image to reach it, and a small file may declare a huge one). EXIF
    that cannot be parsed counts as none."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as the image is meant to be seen, from its header."""
    return image.size[::-1] if orientation(image) in SIDEWAYS else image.size


def upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says (the image itself when it is stored upright)."""
    return ImageOps.exif_transpose(image) if orientation(image) != 1 else image


@contextlib.contextmanager
def quiet_pillow() -> Iterator[None]:
    """Pillow's warnings that the pipeline answers itself silenced: a huge declared size (refused, or only its header
    read) and corrupt EXIF data (read past)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", "Corrupt EXIF data", UserWarning)
        yield


def header_sample(folder: Path, ids: list[str], suffix: str) -> list[tuple[int, int, str]]:
    """(width, height, mode) from the headers of up to HEADER_SAMPLE images `<id><suffix>` spread over `ids`; the
    unreadable ones are left out (the set's check reports them)."""
    picked = [ids[i] for i in sorted(set(np.linspace(0, len(ids) - 1, min(HEADER_SAMPLE, len(ids))).astype(int)))]
    headers = []
    with quiet_pillow():  # a huge declared size is only read here, never decoded
        for image_id in picked:
            try:
                with Image.open(folder / f"{image_id}{suffix}") as image:
                    headers.append((*upright_size(image), image.mode))
            except READ_ERRORS:
                continue
    return headers


def named_for(name: str, word: str) -> bool:
    """A folder name (or path) one of whose words begins with `word`: `masks`, `seg_test`, `images/testing`."""
    return any(part.startswith(word) for part in re.split(r"[^a-z]+", name.lower()))


def class_folder_images(folder: Path) -> list[tuple[str, str]]:
    """(id, class) of the images in `folder`'s class folders (`class_folder_listing`)."""
    return class_folder_listing(folder)[0]


def class_folder_listing(folder: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(id, class) of the image files in `folder`'s class folders and in their subfolders (train/<class>/2019/<file>;
    COVID-19 Radiography's <class>/images/<file>), ids the paths below `folder` (`<class>/<file>`), in order; and what
    was left out as the masks or labels of those images (`_images_below`). Hidden folders are left out too."""
    found, left_out = [], []
    for d in sorted(folder.iterdir()):
        if d.is_dir() and d.name[0] != ".":
            images, masks = _images_below(d)
            found += [(f"{d.name}/{image}", d.name) for image in images]
            left_out += [f"{d.name}/{mask}" for mask in masks]
    return found, left_out


IMAGE_FOLDERS = ("image", "images", "img", "imgs")  # inside a class folder: where its images are, beside their masks
NOT_IMAGES = ("gt", "groundtruth", "ground_truth", "ground truth", "label", "labels", "annotation", "annotations",
              "segmentation", "segmentations")  # inside a class folder: masks or labels of its images, as masks are
MASK_WORDS = r"(?:masks?|seg|segmentation|gt|label|annotation)"  # what names a file as another's mask
MASK_FILES = (re.compile(rf"(.+?)[ _.-]+{MASK_WORDS}(?:[ _-]*\d+)?", re.IGNORECASE),  # benign (1)_mask.png, 123_seg.png
              re.compile(rf"{MASK_WORDS}[ _.-]+(.+)", re.IGNORECASE))  # mask_123.png beside 123.png


def _images_below(folder: Path) -> tuple[list[str], list[str]]:
    """The image files in the class folder `folder` and its subfolders (links not followed), as POSIX paths below it,
    in order; and those left out, their masks or labels: the folders beside an `images/` one (COVID-QU-Ex's
    `lung masks/`), folders named for masks or labels (`masks/`, `ground_truth/`), and files named as an image's mask
    beside it (BUSI's `benign (1)_mask.png`; `123_seg.png`, `mask_123.png`)."""
    inner = [d.name for d in folder.iterdir() if d.is_dir() and d.name[0] != "."]
    named = [d for d in inner if d.casefold() in IMAGE_FOLDERS]
    found, left_out = [], [f"{d}/" for d in inner if (named and d not in named) or not named and _masks(d)]
    for top, dirs, files in os.walk(folder):
        below = Path(top).relative_to(folder)
        left_out += [f"{(below / d).as_posix()}/" for d in dirs if below != Path(".") and d[0] != "." and _masks(d)]
        dirs[:] = sorted(d for d in dirs if d[0] != "." and f"{(below / d).as_posix()}/" not in left_out)
        images = [name for name in sorted(files) if name.lower().endswith(IMAGE_SUFFIXES)
                  and listed_as_image(Path(top) / name)]
        stems = {name.rsplit(".", 1)[0] for name in images}
        for name in images:
            (left_out if _mask_of(name.rsplit(".", 1)[0], stems) else found).append((below / name).as_posix())
    return found, left_out


def _mask_of(stem: str, stems: set[str]) -> bool:
    """A file name that names another image of the folder's with a mask word before or after it (`123_mask`,
    `123_seg`, `mask_123` beside `123`)."""
    return any((match := pattern.fullmatch(stem)) and match.group(1) != stem and match.group(1) in stems
               for pattern in MASK_FILES)


def _masks(name: str) -> bool:
    """A folder named for masks or labels of images (`masks`, `lung masks`, `ground_truth`, `labels`)."""
    return named_for(name, "mask") or name.casefold() in NOT_IMAGES


def listed_as_image(entry: os.DirEntry | Path) -> bool:
    """An entry named like an image that is a file, or a link that leads to none (dangling, a loop) or cannot be
    followed (no permission): listed, so that reading it says what is wrong instead of the image going missing."""
    try:
        return entry.is_file() or entry.is_symlink()
    except OSError:
        return True
