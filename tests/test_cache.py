import os
import shutil
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

import pipeline.cache
from pipeline.cache import decode_images
from pipeline.errors import PipelineError


@pytest.fixture
def folder(competition, tmp_path):
    shutil.copytree(competition / "train", tmp_path / "train")
    return tmp_path / "train"


def ids_of(folder, n=30):
    return [str(i) for i in range(1, n + 1)]


def test_decodes_in_id_order_and_reuses_the_cache(folder, tmp_path):
    ids = ids_of(folder)
    cache = tmp_path / "cache" / "train.npy"
    images = decode_images(folder, ids, cache).whole(folder)
    assert images.shape == (30, 32, 32, 3) and images.dtype == np.uint8
    for k in (0, 17, 29):
        assert np.array_equal(images[k], np.asarray(Image.open(folder / f"{ids[k]}.png").convert("RGB")))
    built = cache.stat().st_mtime_ns
    assert np.array_equal(decode_images(folder, ids, cache).whole(folder), images)
    assert cache.stat().st_mtime_ns == built  # not rebuilt


def test_rebuilds_when_a_png_changes_or_ids_change(folder, tmp_path):
    ids = ids_of(folder)
    cache = tmp_path / "train.npy"
    decode_images(folder, ids, cache).whole(folder)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "5.png")
    os.utime(folder / "5.png", ns=(1, 1))  # even with an old timestamp: the size changed
    assert decode_images(folder, ids, cache).whole(folder)[4].max() == 0
    assert len(decode_images(folder, ids[:10], cache).whole(folder)) == 10


def test_parallel_decode_matches_serial(folder, tmp_path, monkeypatch):
    ids = ids_of(folder, 200)
    serial = np.array(decode_images(folder, ids, tmp_path / "a.npy", workers=1).whole(folder))
    monkeypatch.setattr(pipeline.cache, "CHUNK", 32)
    parallel = decode_images(folder, ids, tmp_path / "b.npy", workers=2).whole(folder)
    assert np.array_equal(serial, parallel)


def test_bad_images_are_listed_once_and_remembered(folder, tmp_path):
    (folder / "3.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "8.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "9.png")  # greyscale in a colour set
    with pytest.raises(PipelineError, match=r"3 problem\(s\) in the images: train/3.png: not a readable image "
                                            r"\(cannot identify image file\); train/8.png: is 16×16, not 32×32 like the set; "
                                            r"train/9.png: is greyscale \(L\) in a colour set"):
        decode_images(folder, ids_of(folder), tmp_path / "train.npy").whole(folder)
    decoded = decode_images(folder, ids_of(folder), tmp_path / "train.npy")
    assert list(decoded.bad) == ["3", "8", "9"] and decoded.images.shape[0] == len(ids_of(folder))
    assert not decoded.images[ids_of(folder).index("8")].any()

def sideways(pixels: np.ndarray, orientation: int) -> Image.Image:
    """`pixels` stored turned, with the EXIF orientation that shows them upright (6: turn right, 8: turn left)."""
    stored = Image.fromarray(np.rot90(pixels, k=1 if orientation == 6 else -1).copy())
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.info["exif"] = exif.tobytes()
    return stored


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_images_are_decoded_upright_as_their_exif_orientation_says(tmp_path, suffix):
    """Phone photos carry an EXIF orientation: a portrait stored on its side is decoded as the portrait, and the
    set's size is the upright one. The rule is part of the cache's fingerprint."""
    rng = np.random.default_rng(0)
    portraits = [np.repeat(np.repeat(rng.integers(0, 256, (4, 2, 3), dtype=np.uint8), 8, 0), 8, 1) for _ in range(3)]
    folder = tmp_path / "train"
    folder.mkdir()
    Image.fromarray(portraits[0]).save(folder / f"1{suffix}", quality=95)  # stored upright: 16 wide, 32 tall
    for image_id, orientation in ((2, 6), (3, 8)):
        turned = sideways(portraits[image_id - 1], orientation)
        assert turned.size == (32, 16)
        turned.save(folder / f"{image_id}{suffix}", exif=turned.info["exif"], quality=95)
    images = decode_images(folder, ["1", "2", "3"], tmp_path / "train.npy", suffix=suffix).whole(folder, suffix)
    assert images.shape == (3, 32, 16, 3)
    for decoded, portrait in zip(images, portraits):
        error = np.abs(decoded.astype(int) - portrait).mean()
        assert error == 0 if suffix == ".png" else error < np.abs(decoded.astype(int) - portrait[::-1, ::-1]).mean() / 4


def test_the_decoding_rule_is_part_of_the_fingerprint(folder, monkeypatch):
    before = pipeline.cache.fingerprint(folder, ids_of(folder))
    monkeypatch.setattr(pipeline.cache, "DECODE_RULE", "exif-orientation ignored")
    assert pipeline.cache.fingerprint(folder, ids_of(folder)) != before


def test_float_images_are_scaled_by_their_range_and_an_unclear_range_is_a_listed_problem(tmp_path):
    """A float image in [0, 1] (overshooting 1 a little, as resampling rings) is scaled by 255, one in [0, 255]
    taken as it is; one between, or well below 0 (normalised), says so instead of decoding near black."""
    folder = tmp_path / "test"
    folder.mkdir()
    grey = np.linspace(0, 255, 32 * 32, dtype=np.float32).reshape(32, 32)
    overshoot = grey / 255
    overshoot[0, 0] = 1.0001
    for image_id, values in (("1", overshoot), ("2", grey), ("3", grey / 255 * 1.5), ("4", grey / 127.5 - 1)):
        Image.fromarray(values, "F").save(folder / f"{image_id}.tif")
    decoded = decode_images(folder, ["1", "2", "3", "4"], tmp_path / "test.npy", suffix=".tif")
    assert decoded.images.shape == (4, 32, 32, 1)
    assert abs(decoded.images[0, 16, 16, 0] - grey[16, 16]) <= 1 and decoded.images[0, 0, 0, 0] == 255
    assert np.array_equal(decoded.images[1, ..., 0], np.rint(grey).astype(np.uint8))
    assert set(decoded.bad) == {"3", "4"} and "neither in [0, 1] nor in [0, 255]" in decoded.bad["3"]


def test_corrupt_exif_data_is_read_past_without_a_warning(folder, tmp_path):
    Image.open(folder / "1.png").save(folder / "1.png", exif=b"II*\x00\x08\x00\x00\x00\xff\xff")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = decode_images(folder, ids_of(folder), tmp_path / "train.npy").whole(folder)
    assert images.shape[0] == 30 and not [w for w in caught if "EXIF" in str(w.message)]


def test_float_images_with_nan_or_infinite_pixels_and_16_bit_grey_alpha_pngs_are_listed_problems(tmp_path):
    folder = tmp_path / "test"
    folder.mkdir()
    grey = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    for image_id, bad in (("1", np.inf), ("2", np.nan)):
        values = grey.copy()
        values[0, 0] = bad
        Image.fromarray(values, "F").save(folder / f"{image_id}.tif")
    decoded = decode_images(folder, ["1", "2"], tmp_path / "test.npy", suffix=".tif")
    assert all("NaN or infinite" in decoded.bad[i] for i in ("1", "2"))
    pixels = np.stack([np.full((32, 32), 200, np.uint16), np.full((32, 32), 65535, np.uint16)], -1)  # 8-bit values
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    (folder / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 16, 4, 0, 0, 0))
                                   + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    decoded = decode_images(folder, ["3"], tmp_path / "grey.npy")
    assert "is a 16-bit colour (or grey + alpha) PNG" in decoded.bad["3"]


def sixteen_bit_rgb_tiff(pixels: np.ndarray) -> bytes:
    """An uncompressed little-endian TIFF of 16 bits per channel holding `pixels` (H, W, 3), which Pillow opens as
    8-bit RGB of their high bytes and cannot write."""
    height, width = pixels.shape[:2]
    data = pixels.astype("<u2").tobytes()
    tags = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 3, 8 + 2 + 10 * 12 + 4), (259, 3, 1, 1), (262, 3, 1, 2),
            (273, 4, 1, 8 + 2 + 10 * 12 + 4 + 6), (277, 3, 1, 3), (278, 3, 1, height), (279, 4, 1, len(data)),
            (284, 3, 1, 1)]  # BitsPerSample's three values and then the pixels follow the directory
    directory = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *tag) for tag in tags) + b"\0" * 4
    return b"II*\0" + struct.pack("<I", 8) + directory + struct.pack("<HHH", 16, 16, 16) + data


def test_float_images_beyond_255_and_16_bit_colour_tiffs_are_listed_problems(tmp_path):
    """A float image reaching 908 was clipped at 255 (91% white), a 16-bit RGB TIFF of 8-bit values decoded black (Pillow
    reads its high bytes): both predicted, unsaid. An all-negative image's range named 0 as its top."""
    folder = tmp_path / "test"
    folder.mkdir()
    grey = np.linspace(0, 255, 32 * 32, dtype=np.float32).reshape(32, 32)
    for image_id, values in (("1", grey * 4), ("2", grey * 1.05), ("3", np.full((32, 32), -5, np.float32)),
                             ("5", (grey - 60) / 30), ("6", grey - 3)):  # z-scores (before, 0 … 6: black); ringing
        Image.fromarray(values, "F").save(folder / f"{image_id}.tif")
    (folder / "4.tif").write_bytes(sixteen_bit_rgb_tiff(np.full((32, 32, 3), 200)))
    decoded = decode_images(folder, ["1", "2", "3", "4", "5", "6"], tmp_path / "test.npy", suffix=".tif")
    assert set(decoded.bad) == {"1", "3", "4", "5"}
    assert "holds float pixels from -2 to 6.5, neither in [0, 1] nor in [0, 255] (standardised" in decoded.bad["5"]
    assert "holds float pixels from 0 to 1020, neither in [0, 1] nor in [0, 255]" in decoded.bad["1"]
    assert int(decoded.images[1].max()) == 255 and int(decoded.images[1, 16, 0, 0]) == round(float(grey[16, 0] * 1.05))
    assert "holds float pixels from -5 to -5" in decoded.bad["3"]
    assert "is a 16-bit colour (or grey + alpha) TIFF, which Pillow reads as its high bytes only" in decoded.bad["4"]


def signed_tiff(pixels: np.ndarray) -> bytes:
    """An uncompressed TIFF of signed 8-bit grey samples (SampleFormat 2), which Pillow reads as unsigned bytes."""
    height, width = pixels.shape
    tags = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
            (273, 4, 1, 8 + 2 + 9 * 12 + 4), (277, 3, 1, 1), (279, 4, 1, pixels.size), (339, 3, 1, 2)]
    directory = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *tag) for tag in tags) + b"\0" * 4
    return b"II*\0" + struct.pack("<I", 8) + directory + pixels.astype(np.int8).tobytes()


def test_signed_8_bit_tiffs_and_16_bit_colour_jpeg_2000_are_listed_problems(tmp_path):
    """Pass 27: a signed 8-bit TIFF's ramp −128 … 127 was read as unsigned (−1 as white), a 16-bit colour JPEG 2000 of
    8-bit values as its high bytes (black): both predicted, unsaid."""
    folder = tmp_path / "test"
    folder.mkdir()
    (folder / "1.tif").write_bytes(signed_tiff(np.tile(np.linspace(-128, 127, 32).round(), (32, 1))))
    colour = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    Image.fromarray(np.dstack([colour] * 3)).save(folder / "2.tif")
    (folder / "3.tif").write_bytes(signed_tiff(np.zeros((32, 32))).replace(struct.pack("<HHII", 339, 3, 1, 2),
                                                                             struct.pack("<HHII", 339, 3, 1, 1)))
    decoded = decode_images(folder, ["1", "2", "3"], tmp_path / "test.npy", suffix=".tif", convert=True)
    assert list(decoded.bad) == ["1"] and "holds signed 8-bit samples, which Pillow reads as unsigned" in decoded.bad["1"]
    for bits, refused in ((16, True), (8, False)):  # a JPEG 2000 codestream's SIZ marker says each component's bits
        path = tmp_path / f"{bits}.j2k"
        Image.fromarray(np.dstack([colour] * 3)).save(path)
        head = path.read_bytes()
        at = head.find(b"\xff\x4f\xff\x51") + 42
        path.write_bytes(head[:at] + bytes([bits - 1, 1, 1] * 3) + head[at + 9:])
        assert (pipeline.cache.jpeg2000_samples(path) == (bits, False)) and bool(
            pipeline.cache.misread_samples(Image.open(path), path)) == refused


def grey_tiff(pixels: np.ndarray, dtype: str, photometric: int = 1, sample_format: int = 1, bits: int | None = None,
              extra: tuple = ()) -> bytes:
    """An uncompressed one-channel TIFF of `pixels` as `dtype` (e.g. "<u2", "<f4", "<i2"), with its Photometric and
    SampleFormat tags as given and the `extra` tags; with `bits` (12), the samples packed at that width (MSB first)."""
    height, width = pixels.shape
    data = pixels.astype(dtype).tobytes() if bits is None else np.packbits(
        ((pixels.astype(np.uint32)[..., None] >> np.arange(bits - 1, -1, -1)) & 1).astype(np.uint8).reshape(
            height, -1), axis=1).tobytes()
    count = 9 + len(extra)
    tags = sorted([(256, 3, 1, width), (257, 3, 1, height), (258, 3, 1, bits or np.dtype(dtype).itemsize * 8),
                   (259, 3, 1, 1), (262, 3, 1, photometric), (273, 4, 1, 8 + 2 + count * 12 + 4), (277, 3, 1, 1),
                   (279, 4, 1, len(data)), (339, 3, 1, sample_format), *extra])
    directory = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *tag) for tag in tags) + b"\0" * 4
    return b"II*\0" + struct.pack("<I", 8) + directory + data


def test_white_is_zero_and_signed_16_bit_grey_tiffs_are_listed_problems(tmp_path):
    """Pass 30: 16-bit and float white-is-zero TIFFs decoded as their negatives (Pillow reverses only 8-bit ones), a
    signed 16-bit TIFF at half brightness (scaled by 1/257): predicted, unsaid. An 8-bit white-is-zero TIFF, which
    Pillow reverses, an unsigned 16-bit one and a 32-bit one of 16-bit values (Pillow's own mode I) are read."""
    folder = tmp_path / "test"
    folder.mkdir()
    ramp = np.tile(np.linspace(0, 1, 32), (32, 1))
    files = {"1": grey_tiff(ramp * 65535, "<u2", photometric=0), "2": grey_tiff(ramp, "<f4", photometric=0, sample_format=3),
             "3": grey_tiff(ramp * 32767, "<i2", sample_format=2), "4": grey_tiff(ramp * 65535, "<i4", sample_format=2),
             "5": grey_tiff(np.rint(ramp * 255), "<u1", photometric=0), "6": grey_tiff(np.rint(ramp * 65535), "<u2"),
             "7": grey_tiff(np.rint(ramp * 4095), "<u2", bits=12),  # pass 33: read at 1/16 of its brightness
             "8": grey_tiff(np.rint(ramp * 4095), "<u2", extra=((281, 3, 1, 4095),))}  # MaxSampleValue 4095
    for image_id, data in files.items():
        (folder / f"{image_id}.tif").write_bytes(data)
    decoded = decode_images(folder, list(files), tmp_path / "test.npy", suffix=".tif")
    assert sorted(decoded.bad) == ["1", "2", "3", "7", "8"]
    assert "holds samples whose top is 4095 (12 bits), not 65535" in decoded.bad["7"]
    assert "holds samples whose top is 4095 (MaxSampleValue), not 65535" in decoded.bad["8"]
    assert all("stored white-is-zero (MinIsWhite)" in decoded.bad[k] for k in ("1", "2"))
    assert "holds signed 16-bit samples, whose top is 32767" in decoded.bad["3"]
    assert decoded.images[3, 0, :, 0].tolist() == np.rint(ramp[0] * 255).astype(int).tolist()  # 32-bit: as Pillow saves I
    for signed in (True, False):  # pass 31: a signed 16-bit JPEG 2000 read shifted, 128 + g/2
        Image.fromarray((ramp * 255).astype(np.uint16) * 128).save(tmp_path / "16.j2k", irreversible=False,
                                                                  signed=signed)
        with Image.open(tmp_path / "16.j2k") as image:
            misread = pipeline.cache.misread_samples(image, tmp_path / "16.j2k")
        assert (misread or "").startswith("holds signed 16-bit samples") == signed, misread
    assert decoded.images[4, 0, :, 0].tolist() == np.rint(255 - ramp[0] * 255).astype(int).tolist()  # reversed
    assert decoded.images[5, 0, :, 0].tolist() == np.rint(ramp[0] * 255).astype(int).tolist()


def test_a_set_of_which_no_header_is_readable_names_why(tmp_path):
    """Pass 30: "none of 101 images spread over the set is readable" gave no reason (float16 TIFFs, which Pillow
    cannot open)."""
    folder = tmp_path / "test"
    folder.mkdir()
    for image_id in ("1", "2"):
        (folder / f"{image_id}.tif").write_bytes(grey_tiff(np.ones((8, 8)), "<f2", sample_format=3))
    with pytest.raises(PipelineError, match=r"test: none of 2 images spread over the set is readable \(1.tif: "
                                            r".+\); save them as 8-bit PNG or JPEG"):
        decode_images(folder, ["1", "2"], tmp_path / "test.npy", suffix=".tif")


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif"])
def test_an_animated_or_multi_page_image_is_its_first_frame_and_said(competition, tmp_path, suffix):
    """An animated PNG or WebP, or a multi-page TIFF, is decoded as its first frame (every library's reading), and the
    stages that read the cache say which images those are, from a fresh decode and from the cache alike."""
    from rich.console import Console

    from pipeline.cache import cached_train_images
    from pipeline.layout import load_train_set

    root = tmp_path / "dataset"
    shutil.copytree(competition, root)
    first = np.asarray(Image.open(root / "train" / "7.png").convert("RGB"))
    frames = [Image.fromarray(first), Image.fromarray(255 - first)]
    (root / "train" / "7.png").unlink()
    frames[0].save(root / "train" / f"7{suffix}", save_all=True, append_images=frames[1:], lossless=True)
    for path in [*(root / "train").glob("*.png"), *(root / "test").glob("*.png")] if suffix != ".png" else []:
        Image.open(path).save(path.with_suffix(suffix), lossless=True)
        path.unlink()
    (root / "competition.json").write_text(f'{{"image_suffix": "{suffix}"}}')
    data = load_train_set(root)
    for _ in range(2):  # decoded, then read from the cache
        console = Console(record=True, width=300)
        decoded = cached_train_images(root, data, console)
        row = decoded.images[data.ids.index("7")]
        assert decoded.first_frames == ("7",)
        assert np.array_equal(row, first)
        assert f"1 image(s) hold several frames (animated or multi-page); the first frame of each is used: " \
               f"7{suffix}" in console.export_text()


def test_integer_images_that_are_signed_or_wider_than_16_bits_are_listed_problems(tmp_path):
    """A 32-bit integer image ('I') with negative pixels (before, clipped to 0: 62% black) or pixels beyond 16 bits
    (before, scaled as 16 bits and clipped) is a listed problem; one within 16 bits is scaled as such."""
    folder = tmp_path / "test"
    folder.mkdir()
    grey = np.linspace(0, 255, 32 * 32).reshape(32, 32).astype(np.int32)
    for image_id, values in (("1", grey - 128), ("2", grey * 1000), ("3", grey * 257)):
        Image.fromarray(values, "I").save(folder / f"{image_id}.tif")
    decoded = decode_images(folder, ["1", "2", "3"], tmp_path / "test.npy", suffix=".tif")
    assert set(decoded.bad) == {"1", "2"}
    assert "holds integer pixels from -128 to 127, outside 0 … 65535" in decoded.bad["1"]
    assert "from 0 to 255000" in decoded.bad["2"]
    assert np.array_equal(decoded.images[2, ..., 0], grey.astype(np.uint8))
