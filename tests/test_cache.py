import os
import shutil

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