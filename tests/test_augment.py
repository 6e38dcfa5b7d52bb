import torch
import torch.nn.functional as F

from pipeline.augment import (
    BATCHED_POLICIES,
    BatchLoader,
    cutout,
    normalize,
    random_crop,
    random_flip,
)


def distinct_images(n=64, c=3, h=8, w=8):
    """Images whose every pixel value is unique within the image (so a crop's offset can be recovered)."""
    base = torch.arange(1, c * h * w + 1).reshape(c, h, w) % 250 + 1
    return torch.stack([(base + k) % 250 + 1 for k in range(n)]).to(torch.uint8)


def test_random_crop_is_a_window_of_the_padded_image():
    images = distinct_images()
    out = random_crop(images, 2, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = F.pad(images, (2, 2, 2, 2))
    offsets = set()
    for k in range(len(images)):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(out[k], padded[k, :, dy:dy + 8, dx:dx + 8])]
        assert matches, f"image {k} is not a crop within the padding"
        offsets.add(matches[0])
    assert len(offsets) > 8  # offsets vary across the batch


def test_random_flip_mirrors_about_half():
    images = distinct_images(200)
    out = random_flip(images, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, i.flip(2)) for o, i in zip(out, images)]
    assert all(f or torch.equal(o, i) for f, o, i in zip(flipped, out, images))
    assert 60 < sum(flipped) < 140


def test_cutout_erases_one_clipped_square():
    images = torch.ones(100, 3, 16, 16)
    out = cutout(images, 0.5, torch.Generator().manual_seed(0))
    for image in out:
        erased = image[0] == 0
        assert torch.equal(erased, image[1] == 0) and torch.equal(erased, image[2] == 0)
        rows, cols = erased.any(1).nonzero().flatten(), erased.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 8 and 1 <= len(cols) <= 8
        assert erased.sum() == len(rows) * len(cols)  # a (clipped) rectangle, nothing else
        assert rows.diff().eq(1).all() and cols.diff().eq(1).all()


def test_normalize():
    images = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    out = normalize(images, torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.25, 0.5, 1.0]),
                    torch.channels_last)
    assert out.dtype == torch.float32 and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([2.0, 1.0, 0.5]))


def test_batch_loader_covers_each_image_once_and_is_seeded():
    images = distinct_images(50)
    targets = torch.arange(50)
    def epoch(seed):
        loader = BatchLoader(images, targets, 16, (0, 0, 0), (1, 1, 1), BATCHED_POLICIES["cutout"],
                             torch.Generator().manual_seed(seed))
        return list(loader)
    batches = epoch(1)
    assert len(batches) == 4 and [len(t) for _, t in batches] == [16, 16, 16, 2]
    assert sorted(torch.cat([t for _, t in batches]).tolist()) == list(range(50))
    assert all(x.shape[1:] == (3, 8, 8) and x.dtype == torch.float32 for x, _ in batches)
    again = epoch(1)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(batches, again))
    assert not all(torch.equal(a, b) for (a, _), (b, _) in zip(batches, epoch(2)))


def test_evaluation_loader_is_ordered_and_unaugmented():
    images = distinct_images(10)
    loader = BatchLoader(images, torch.arange(10), 4, (0, 0, 0), (1, 1, 1))
    x = torch.cat([b for b, _ in loader])
    assert torch.equal(torch.cat([t for _, t in loader]), torch.arange(10))
    assert torch.allclose(x * 255, images.float())
