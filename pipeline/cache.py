"""Decoded-image caches: a folder of images (`<id><suffix>`: PNG, JPEG, TIFF, …) decoded once, in parallel, into a
uint8 `.npy` memory map.

The cache `<split>.npy` holds (N, H, W, C) uint8 in the order of the ids it was built for; the set's size
and mode are those of most of its images (C = 1 for greyscale, 3 otherwise: every image is converted to
that; 16-bit greyscale is scaled to 8 bits; an EXIF orientation is applied, `images.DECODE_RULE`).
`<split>.json` beside it records a fingerprint of those ids and of each file's size, modification time and
change time, so any added, removed or rewritten image rebuilds it — also one replaced by a file of the same
size with its modification time kept (`cp -p`, `rsync -a`, `tar` set that time, but no tool can set the change
time). (No inode: FUSE and network mounts may number a file anew on each visit; a chmod/chown also changes the
change time, and costs one decode.) It also records the `.npy`'s own size and times: a cache replaced or
rewritten by anything but this module is decoded again; and each read decodes a few of its images again
(`SPOT_CHECKS`, at random), which a cache must hold, its metadata forged or not.

The caches live in `dataset/.cache/`, or, where dataset/ cannot be written (Kaggle mounts competition
data read-only under /kaggle/input), in the user cache folder: `$PIPELINE_CACHE_DIR/datasets/<digest of
dataset/'s path>/` (default ~/.cache/pipeline).
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from rich.console import Console

from pipeline.competition import read_competition
from pipeline.errors import PipelineError
from pipeline.images import (DECODE_RULE, HEADER_SAMPLE, READ_ERRORS, header_sample, quiet_pillow, upright,
                             upright_size)
from pipeline.layout import LabeledImages, shown_names, id_sort_key, problems_message
from pipeline.progress import progress_bar
from pipeline.workspace import atomic_path, check_replaceable, user_cache_dir, write_text_atomic

CACHE_DIR = ".cache"  # under dataset/
CHUNK = 2000  # images per decode task
OTHER_SIZE = " like the set"  # ends the problem of an image of another size than its set's


def cache_folder(root: Path) -> Path:
    """Where the decoded caches of the dataset at `root` go: root/.cache, else (root cannot be written) the
    user cache folder."""
    inside = root / CACHE_DIR
    if inside.exists() and not inside.is_dir():
        raise PipelineError(f"{inside}: a file where the folder of decoded caches goes; remove it")
    if os.access(inside if inside.is_dir() else root, os.W_OK):
        return inside
    return user_cache_dir() / "datasets" / hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]


def fingerprint(folder: Path, ids: list[str], suffix: str = ".png", fit: int | None = None, convert: bool = False) -> str:
    """A digest of the ids and each image's (`<id><suffix>`) size, modification and change times, and a symlink's
    own times (paths as plain strings: pathlib's per-path overhead doubled the cost); the size `fit` decodes to,
    whether images of the other colour mode are `convert`ed and the decoding rule (`DECODE_RULE`)."""
    digest = hashlib.sha256(f"{DECODE_RULE}\n{f'fit {fit}' if fit else ''}\n{'convert' if convert else ''}".encode())
    base = os.fspath(folder)
    for image_id in ids:
        path = f"{base}/{image_id}{suffix}"
        try:
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):  # the link's own times change when it is pointed elsewhere
                digest.update(f"{info.st_mtime_ns}:{info.st_ctime_ns}:".encode())
                info = os.stat(path)
        except OSError as e:
            if not os.path.lexists(path):
                raise PipelineError(f"{folder / f'{image_id}{suffix}'}: image not found") from None
            digest.update(f"{image_id}:unreadable {e.errno}\n".encode())  # a dangling link, a loop: decoding says so
            continue
        digest.update(f"{image_id}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}\n".encode())
    return digest.hexdigest()


GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "F")
WIDE_GREY_MODES = ("I", "I;16", "I;16L", "I;16B")  # 16 bits per pixel (PIL opens 16-bit PNGs as I or I;16)


class PixelRange(Exception):
    """An image whose pixel values do not say their own scale: one line naming it, never a guess."""


BITS_PER_SAMPLE, PHOTOMETRIC, MAX_SAMPLE_VALUE, SAMPLE_FORMAT = 258, 262, 281, 339  # TIFF tags
MIN_IS_WHITE, SIGNED_SAMPLES = 0, 2  # Photometric's value for white-is-zero grey, SampleFormat's for signed integers
UNIT_OVERSHOOT = 1.1  # a float image may overshoot its top (1 or 255) this far (resampling rings): clipped, not rescaled


def eight_bit(image: Image.Image, grey_set: bool) -> np.ndarray:
    """The image's pixels as uint8 in the set's mode. 16-bit greyscale is scaled (65535 → 255), not clipped, as
    viewers and image libraries show it; one whose pixels are not all 0 yet none exceeds 255 is refused (8-bit values
    stored in 16 bits, or a near-black 16-bit image: no rule of one image's own tells, and one rule per image would
    read two alike images 257 times apart); integers below 0 or above 65535 are refused. Float greyscale in [0, 1] is
    scaled by 255, float in [0, 255] taken as it is (each may overshoot its top by UNIT_OVERSHOOT, clipped); floats
    beyond either, or below 0 by more than a tenth of their top (standardised: z-scores), are refused."""
    if image.mode in (*WIDE_GREY_MODES, "F"):
        values = np.asarray(image, dtype=np.float32)
        if not np.isfinite(values).all():
            raise PixelRange("holds NaN or infinite pixel values; save it with 8 bits")
        top, bottom = (float(values.max()), float(values.min())) if values.size else (0.0, 0.0)
        unit = top <= UNIT_OVERSHOOT
        if image.mode == "F" and (not (unit or 2 <= top <= 255 * UNIT_OVERSHOOT) or bottom < -0.1 * max(top, 1)):
            raise PixelRange(f"holds float pixels from {bottom:.4g} to {top:.4g}, neither in [0, 1] nor in [0, 255] "
                             "(standardised, or wider than 8 bits?); save it with 8 bits")
        if image.mode != "F" and (bottom < 0 or top > 65535):  # 32-bit integers: signed, or beyond 16 bits
            raise PixelRange(f"holds integer pixels from {bottom:.0f} to {top:.0f}, outside 0 … 65535 (signed, or "
                             "more than 16 bits); save it with 8 bits")
        if image.mode != "F" and 0 < top <= 255:
            wide = "16-bit" if image.mode.startswith("I;16") else "16- or 32-bit integer"  # PIL's I: either
            raise PixelRange(f"is a {wide} image whose pixels reach only {top:.0f} of 65535: 8-bit values stored in "
                             "more bits, or a near-black image? its file cannot tell; save it with 8 bits")
        scale = 1 / 257 if image.mode != "F" else (255.0 if unit else 1.0)
        image = Image.fromarray(np.rint(values * scale).clip(0, 255).astype(np.uint8), "L")
    return np.asarray(image.convert("L" if grey_set else "RGB"))


def _decode_chunk(folder: str, ids: list[str], start: int, out_path: str, size: tuple[int, int],
                  suffix: str, fit: int | None, convert: bool) -> tuple[dict[str, str], list[str], list[str]]:
    """Decode `ids` into rows start… of the memory map; returns {id: problem} for the images not used, the ids
    of those `convert`ed from the other colour mode (else refused), and those of several frames: `_decode_one`."""
    out = np.load(out_path, mmap_mode="r+")
    problems, converted, first_frames = {}, [], []
    with quiet_pillow():
        for offset, image_id in enumerate(ids):
            path = Path(folder) / f"{image_id}{suffix}"
            pixels, problem, odd, frames = _decode_one(path, out.shape[1:], fit, convert)
            if problem:
                problems[image_id] = problem
            else:
                out[start + offset] = pixels
                converted += [image_id] if odd else []
                first_frames += [image_id] if frames > 1 else []
    out.flush()
    return problems, converted, first_frames


def _decode_one(path: Path, shape: tuple[int, int, int], fit: int | None,
                convert: bool) -> tuple[np.ndarray | None, str | None, bool, int]:
    """One image as a row of a set of `shape` (H, W, C): its pixels (of its first frame, as every image library reads
    an animated or multi-page file), or why it is not used; whether it was converted from the other colour mode; and
    its number of frames. Its size and mode are read from its header and checked before its pixels are decoded;
    with `fit`, it is resized (shorter side to `fit`, then the centre square cropped) instead of its size checked.
    Called under `quiet_pillow` (a huge declared size is refused here)."""
    grey_set = shape[-1] == 1
    try:
        with Image.open(path) as image:
            grey, (width, height) = image.mode in GREY_MODES, upright_size(image)
            misread = misread_samples(image, path)
            if misread:
                return None, misread, False, 1
            if grey != grey_set and not convert:
                return None, (f"is {'greyscale' if grey else 'colour'} ({image.mode}) in a "
                              f"{'greyscale' if grey_set else 'colour'} set"), False, 1
            if not fit and (height, width) != shape[:2]:
                return None, f"is {width}×{height}, not {shape[1]}×{shape[0]}{OTHER_SIZE}", False, 1
            pixels = eight_bit(upright(image), grey_set)
            if fit:
                pixels = np.asarray(ImageOps.fit(Image.fromarray(pixels), (fit, fit), Image.Resampling.BILINEAR))
            return pixels.reshape(shape), None, grey != grey_set, getattr(image, "n_frames", 1)
    except Image.DecompressionBombError:
        return None, "declares too many pixels to decode safely (a decompression bomb?)", False, 1
    except PixelRange as e:
        return None, str(e), False, 1
    except READ_ERRORS as e:
        return None, f"not a readable image ({_reason(e, path)})", False, 1


def _header_error(path: Path) -> str:
    """Why the header of the image at `path` cannot be read."""
    try:
        with quiet_pillow(), Image.open(path) as image:
            upright_size(image)
    except READ_ERRORS as e:
        return _reason(e, path)
    return "read now, but not when the set was sampled"


def _reason(error: Exception, path: Path) -> str:
    """The error's message without the path it names."""
    return str(error).replace(f"'{path}'", "").replace(str(path), "").strip().rstrip(":") or type(error).__name__


SPOT_CHECKS = 16  # images decoded again, at random, each time a cache is read: a cache must hold their pixels


def matches_images(images: np.ndarray, folder: Path, ids: list[str], bad: dict, suffix: str, fit: int | None,
                   convert: bool) -> bool:
    """Whether a few of the cached images (SPOT_CHECKS, at random) are those their files decode to now: a cache
    written or replaced by anything but this module (its metadata stamped to match) is decoded again, not trusted."""
    usable = [k for k, image_id in enumerate(ids) if image_id not in bad]
    with quiet_pillow():
        for k in np.random.default_rng().choice(usable, min(SPOT_CHECKS, len(usable)), replace=False):
            pixels, problem, _, _ = _decode_one(folder / f"{ids[k]}{suffix}", images.shape[1:], fit, convert)
            if problem or not np.array_equal(pixels, images[k]):
                return False
    return True


def misread_samples(image: Image.Image, path: Path) -> str | None:
    """Why Pillow would read the image's samples as other values than they hold, or None: 16 bits per colour channel
    in a PNG, TIFF or JPEG 2000 (it keeps their high bytes only), signed 8-bit samples (read as unsigned); and in a
    TIFF of 16-bit or float grey, white-is-zero (read unreversed: a negative), signed 16-bit samples (their top is
    32767: scaled as 65535, half as bright; as in a JPEG 2000), or samples of fewer bits (12) or a declared
    MaxSampleValue below 65535 (read 16 times too dark)."""
    if image.mode in (*WIDE_GREY_MODES, "F") and image.format == "JPEG2000" and jpeg2000_samples(path)[1]:
        return "holds signed 16-bit samples, whose top is 32767, not 65535 (Pillow shifts them); save it as unsigned " \
               "8 bits"
    if image.mode in (*WIDE_GREY_MODES, "F"):
        return _misread_wide_tiff(image) if image.format == "TIFF" else None  # else scaled by `eight_bit`
    bits, signed = 8, False
    if image.format == "TIFF":
        bits = max(_tag_values(image, BITS_PER_SAMPLE) or (8,))
        signed = SIGNED_SAMPLES in _tag_values(image, SAMPLE_FORMAT)
    elif image.format == "JPEG2000":
        bits, signed = jpeg2000_samples(path)
    elif image.format == "PNG":
        with open(path, "rb") as file:
            header = file.read(26)
        bits = 16 if len(header) == 26 and header[24] == 16 and header[25] in (2, 4, 6) else 8  # RGB, grey + alpha, RGBA
    if bits > 8:
        return f"is a 16-bit colour (or grey + alpha) {image.format}, which Pillow reads as its high bytes only (8-bit " \
               "values stored in 16 bits read as black); save it with 8 bits"
    if signed:
        return "holds signed 8-bit samples, which Pillow reads as unsigned (-1 as 255); save it as unsigned 8 bits"
    return None


def _misread_wide_tiff(image: Image.Image) -> str | None:
    """Why a TIFF of grey samples wider than 8 bits would be misread, or None."""
    if MIN_IS_WHITE in _tag_values(image, PHOTOMETRIC):
        return "is a 16-bit or float TIFF stored white-is-zero (MinIsWhite), which Pillow reads unreversed, as its " \
               "negative; save it with 8 bits, or black-is-zero"
    bits, top = max(_tag_values(image, BITS_PER_SAMPLE) or (16,)), max(_tag_values(image, MAX_SAMPLE_VALUE) or (0,))
    if image.mode != "F" and SIGNED_SAMPLES in _tag_values(image, SAMPLE_FORMAT) and bits == 16:
        return "holds signed 16-bit samples, whose top is 32767, not 65535; save it as unsigned 8 bits"
    if image.mode != "F" and (bits < 16 or 0 < top < 65535 and bits == 16):
        return f"holds samples whose top is {top or 2 ** bits - 1} ({'MaxSampleValue' if top else f'{bits} bits'}), " \
               "not 65535, which the 16-bit rule (65535 as 255) would read dark; save it with 8 bits"
    return None  # 32-bit integers (as Pillow saves its mode I) are read as 16-bit values, beyond them refused


def _tag_values(image: Image.Image, tag: int) -> tuple:
    value = image.tag_v2.get(tag, ())
    return value if isinstance(value, tuple) else (value,)


def jpeg2000_samples(path: Path) -> tuple[int, bool]:
    """The widest component's bits and whether any is signed, from the codestream's SIZ marker (found in the first
    64 KiB: a JP2's header boxes come before it); 8 bits, unsigned, where it is not found."""
    with open(path, "rb") as file:
        head = file.read(1 << 16)
    at = head.find(b"\xff\x4f\xff\x51")  # start of codestream, then SIZ
    if at < 0 or len(head) < at + 42:
        return 8, False
    count = int.from_bytes(head[at + 40:at + 42], "big")
    depths = head[at + 42:at + 42 + 3 * count:3]
    return max(((d & 0x7F) + 1 for d in depths), default=8), any(d & 0x80 for d in depths)


def _set_shape(folder: Path, ids: list[str], suffix: str, fit: int | None) -> tuple[int, int, int]:
    """Height, width (`fit` × `fit` with a `fit`) and channels (1 for greyscale, else 3) of most of the set: the
    commonest among the headers of up to HEADER_SAMPLE images spread over it (one odd image does not decide it)."""
    shapes = Counter((height, width, 1 if mode in GREY_MODES else 3)
                     for width, height, mode in header_sample(folder, ids, suffix))
    if not shapes:
        first = folder / f"{ids[0]}{suffix}"
        raise PipelineError(f"{folder}: none of {min(HEADER_SAMPLE, len(ids))} images spread over the set is readable "
                            f"({first.name}: {_header_error(first)}); save them as 8-bit PNG or JPEG, or fetch them again")
    if fit:
        channels = Counter({c: n for (_, _, c), n in shapes.items()}).most_common(1)[0][0]
        return fit, fit, channels
    return shapes.most_common(1)[0][0]


@dataclass(frozen=True)
class DecodedImages:
    images: np.ndarray  # read-only (N, H, W, C) uint8 memory map; rows of unusable images are zero
    bad: dict[str, str]  # id -> why its image is not used
    key: str = ""  # the fingerprint of the files it was decoded from
    converted: tuple[str, ...] = ()  # ids of images converted from the other colour mode (`convert`)
    first_frames: tuple[str, ...] = ()  # ids of animated or multi-page images, of which the first frame is used

    def say_first_frames(self, folder: Path, suffix: str, console: Console | None) -> None:
        if self.first_frames:
            (console or Console()).print(f"note: {folder}: {len(self.first_frames)} image(s) hold several frames "
                                         "(animated or multi-page); the first frame of each is used: "
                                         f"{shown_names(self.first_frames, suffix)}")

    def whole(self, folder: Path, suffix: str = ".png") -> np.ndarray:
        """The images of a set that must be complete: any unusable image is an error listing them."""
        if self.bad:
            sized = any(why.endswith(OTHER_SIZE) for why in self.bad.values())
            advice = ("Images of other sizes are decoded at one square with image_size in competition.json (or "
                      "`pipeline fetch --img-size S`, naming the --competition, --dataset or --sample fetched); fix "
                      "or replace any other (fetch again for a downloaded competition)." if sized else
                      "Fix or replace them (fetch again for a downloaded competition).")
            raise PipelineError(problems_message(folder, image_problems(folder, self.bad, suffix), "images", advice))
        return self.images


def decode_images(folder: Path, ids: list[str], cache_file: Path, console: Console | None = None,
                  workers: int | None = None, suffix: str = ".png", fit: int | None = None,
                  convert: bool = False) -> DecodedImages:
    """The images `folder/<id><suffix>` (each resized to `fit` × `fit` with a `fit`; with `convert`, a greyscale
    image in a colour set, or the reverse, converted rather than refused: `_decode_chunk`) as a uint8 memory map and
    the ones that cannot be used, decoding only when the cache is stale (its metadata keeps the list of unusable
    and converted images)."""
    console = console or Console()
    key = fingerprint(folder, ids, suffix, fit, convert)
    meta_file = cache_file.with_suffix(".json")
    if cache_file.is_file() and meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text())
            if meta.get("key") == key and meta.get("seal") != metadata_seal(key, meta.get("bad"), meta.get("converted"),
                                                                    cache_file, meta.get("first_frames")):
                console.print(f"{meta_file}: edited or replaced since it was written; decoding the images again")
            elif meta.get("key") == key:
                images = np.load(cache_file, mmap_mode="r")
                if images.shape[0] == len(ids) and matches_images(images, folder, ids, meta["bad"], suffix, fit, convert):
                    return DecodedImages(images, meta["bad"], key, tuple(meta.get("converted", ())),
                                         tuple(meta.get("first_frames", ())))
                console.print(f"{cache_file}: not the images of {folder.name}/ (written by hand?); decoding them again")
        except (ValueError, TypeError, AttributeError):
            pass  # unreadable metadata or array: rebuild
    height, width, channels = _set_shape(folder, ids, suffix, fit)
    workers = workers or os.cpu_count() or 1
    bad: dict[str, str] = {}
    converted: list[str] = []
    first_frames: list[str] = []
    check_replaceable(meta_file)
    meta_file.unlink(missing_ok=True)
    with atomic_path(cache_file) as tmp:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(ids), height, width, channels)).flush()
        chunks = [(str(folder), ids[k:k + CHUNK], k, str(tmp), (height, width), suffix, fit, convert)
                  for k in range(0, len(ids), CHUNK)]
        with progress_bar(console, f"decoding {folder.name}/", len(ids)) as advance:
            if len(chunks) == 1 or workers == 1:
                for chunk in chunks:
                    problems, odd, frames = _decode_chunk(*chunk)
                    bad, converted, first_frames = bad | problems, converted + odd, first_frames + frames
                    advance(len(chunk[1]))
            else:
                with ProcessPoolExecutor(min(workers, len(chunks))) as pool:
                    futures = {pool.submit(_decode_chunk, *chunk): len(chunk[1]) for chunk in chunks}
                    for future in as_completed(futures):
                        problems, odd, frames = future.result()
                        bad, converted, first_frames = bad | problems, converted + odd, first_frames + frames
                        advance(futures[future])
    bad = {image_id: bad[image_id] for image_id in ids if image_id in bad}  # in id order
    converted, first_frames = sorted(converted, key=id_sort_key), sorted(first_frames, key=id_sort_key)
    write_text_atomic(meta_file, json.dumps({"key": key, "images": len(ids), "height": height, "width": width,
                                             "channels": channels, "bad": bad, "converted": converted,
                                             "first_frames": first_frames,
                                             "seal": metadata_seal(key, bad, converted, cache_file, first_frames)})
                      + "\n")
    console.print(f"decoded {len(ids)} images of {folder}/ into {cache_file}"
                  + (f" ({len(bad)} unusable)" if bad else ""))
    return DecodedImages(np.load(cache_file, mmap_mode="r"), bad, key, tuple(converted), tuple(first_frames))


def metadata_seal(key: str, bad: object, converted: object, cache_file: Path, first_frames: object = None) -> str:
    """What the metadata says of the decoded file (its images' fingerprint, the unusable, converted and several-frame
    images) bound to that file's size, modification and change times: metadata edited since, or a cache replaced or
    rewritten since (no tool can set the change time), is decoded again, never trusted."""
    info = cache_file.stat()
    stamp = [key, bad, converted, info.st_size, info.st_mtime_ns, info.st_ctime_ns]
    stamp += [first_frames] if first_frames else []  # a cache without such images: sealed as before they were kept
    return hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()


def image_problems(folder: Path, bad: dict[str, str], suffix: str = ".png") -> list[str]:
    return [f"{folder.name}/{image_id}{suffix}: {why}" for image_id, why in bad.items()]


def cached_train_images(root: Path, data: LabeledImages, console: Console | None = None,
                        cache_dir: Path | None = None) -> DecodedImages:
    """`data`'s images as uint8 (N, H, W, C) and the unusable ones, decoded once into `cache_dir`
    (default: `cache_folder`)."""
    decoded = decode_images(data.image_dir, data.ids, (cache_dir or cache_folder(root)) / "train.npy", console,
                            suffix=data.image_suffix, fit=data.image_size)
    decoded.say_first_frames(data.image_dir, data.image_suffix, console)
    return decoded


def test_images_key(root: Path, test_ids: list[str]) -> str:
    """The fingerprint of the test images `cached_test_images` decodes (ids in id order), which a saved prediction
    keeps: a prediction is of these images only while it matches."""
    described = read_competition(root)
    return fingerprint(root / described.test_images, sorted(test_ids, key=id_sort_key), described.image_suffix,
                       described.image_size, convert=True)


def cached_test_images(root: Path, test_ids: list[str], console: Console | None = None,
                       cache_dir: Path | None = None) -> tuple[list[str], np.ndarray, str]:
    """`test_ids` (from `check_test`) in id order, their images as uint8 (N, H, W, C), decoded once (any
    unusable image is an error; one of the other colour mode than the set's is converted, and said), and the
    fingerprint of their files."""
    ids = sorted(test_ids, key=id_sort_key)
    described = read_competition(root)
    folder = root / described.test_images
    decoded = decode_images(folder, ids, (cache_dir or cache_folder(root)) / "test.npy", console,
                            suffix=described.image_suffix, fit=described.image_size, convert=True)
    if decoded.converted:
        mode = "greyscale" if decoded.images.shape[-1] == 1 else "colour"
        (console or Console()).print(f"{folder}: {len(decoded.converted)} image(s) not {mode} like the set, converted "
                                     f"to {mode} to be predicted: {shown_names(decoded.converted, described.image_suffix)}")
    decoded.say_first_frames(folder, described.image_suffix, console)
    return ids, decoded.whole(folder, described.image_suffix), decoded.key
