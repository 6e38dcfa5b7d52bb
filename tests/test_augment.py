import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from pipeline.augment import (
    BATCHED_POLICIES,
    TRIVIAL_OPERATIONS,
    BatchLoader,
    Policy,
    alternating_flips,
    cutout,
    mix,
    normalize,
    random_crop,
    random_erase,
    random_flip,
    trivial_augment,
)
from pipeline.config import BATCHED_AUGMENTATIONS, TrainConfig
from pipeline.errors import PipelineError


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


def test_reflect_padded_crop_is_a_window_of_the_mirrored_image():
    images = distinct_images()
    out = random_crop(images, 2, torch.Generator().manual_seed(0), reflect=True)
    assert out.dtype == torch.uint8
    padded = F.pad(images.float(), (2, 2, 2, 2), mode="reflect")
    for k in range(len(images)):
        assert any(torch.equal(out[k].float(), padded[k, :, dy:dy + 8, dx:dx + 8]) for dy in range(5) for dx in range(5))
    assert (out > 0).all()  # mirrored borders: no zero pixel comes in (the images have none)


def test_alternating_flips_show_each_image_both_ways_every_two_epochs():
    first, second, third = (alternating_flips(1000, 7, epoch) for epoch in (0, 1, 2))
    assert 400 < first.sum() < 600
    assert torch.equal(second, ~first) and torch.equal(third, first)
    assert not torch.equal(alternating_flips(1000, 8, 0), first)  # seeded


def test_loader_with_alternating_flip_mirrors_the_marked_images():
    images, targets = distinct_images(50), torch.arange(50)
    policy = replace(BATCHED_POLICIES["shift-altflip"], pad=0)
    flips = alternating_flips(50, 3, 0)
    batches = list(BatchLoader(images, targets, 16, (0, 0, 0), (1, 1, 1), policy, torch.Generator().manual_seed(1),
                               flips=flips))
    for x, ids in batches:
        expected = torch.stack([images[i].flip(2) if flips[i] else images[i] for i in ids.tolist()])
        assert torch.allclose(x * 255, expected.float())
    with pytest.raises(ValueError, match="needs `flips`"):
        BatchLoader(images, targets, 16, (0, 0, 0), (1, 1, 1), policy, torch.Generator())


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


def random_images(n=40, c=3, size=32, seed=0):
    return torch.randint(0, 256, (n, c, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


COLOUR = {6: TF.adjust_brightness, 7: TF.adjust_saturation, 8: TF.adjust_contrast, 9: TF.adjust_sharpness}


@pytest.mark.parametrize("channels", [3, 1])
def test_trivial_augments_operations_match_torchvisions_image_by_image(channels):
    images = random_images(c=channels)
    level = torch.arange(40) % 31 / 30
    sign = torch.tensor([1, -1]).repeat(20)
    for k, reference in COLOUR.items():
        if k == 7 and channels == 1:
            continue  # saturation leaves a grey image as it is
        out = TRIVIAL_OPERATIONS[k](images, level, sign)
        for i in range(40):
            expected = reference(images[i], float(1 + 0.99 * level[i] * sign[i]))
            assert (out[i].int() - expected.int()).abs().max() <= 1  # float rounding before the cast to uint8
    posterized, solarized = TRIVIAL_OPERATIONS[10](images, level, sign), TRIVIAL_OPERATIONS[11](images, level, sign)
    for i in range(40):
        assert torch.equal(posterized[i], TF.posterize(images[i], int(8 - round(float(level[i]) * 6))))
        assert torch.equal(solarized[i], TF.solarize(images[i], float(255 * (1 - level[i]))))
    assert torch.equal(TRIVIAL_OPERATIONS[12](images, level, sign), TF.autocontrast(images))
    assert torch.equal(TRIVIAL_OPERATIONS[13](images, level, sign), TF.equalize(images))


def test_trivial_augments_geometry_per_image():
    images = random_images(3)
    quarter_turn = torch.full((3,), 20 / 30)  # 135° · 20/30
    turned = TRIVIAL_OPERATIONS[5](images, quarter_turn, torch.tensor([1, -1, 1]))
    assert torch.equal(turned[0], torch.rot90(images[0], 1, (1, 2)))
    assert torch.equal(turned[1], torch.rot90(images[1], -1, (1, 2)))
    shifted = TRIVIAL_OPERATIONS[3](images, torch.tensor([3 / 32, 0, 1]), torch.tensor([1, 1, -1]))
    assert torch.equal(shifted[0, :, :, :29], images[0, :, :, 3:]) and not shifted[0, :, :, 29:].any()
    assert torch.equal(shifted[1], images[1]) and not shifted[2].any()  # no shift; shifted out entirely
    down = TRIVIAL_OPERATIONS[4](images, torch.tensor([3 / 32] * 3), torch.tensor([-1] * 3))
    assert torch.equal(down[:, :, 3:], images[:, :, :29]) and not down[:, :, :3].any()
    sheared = TRIVIAL_OPERATIONS[1](images, torch.tensor([0.5, 0.5, 0.0]), torch.tensor([1, -1, 1]))
    assert torch.equal(sheared[2], images[2]) and not torch.equal(sheared[0], sheared[1])
    assert torch.equal(sheared[0, :, 16], images[0, :, 16])  # the row through the centre stays put


def test_trivial_augment_draws_per_image_and_is_seeded():
    images = random_images(400)
    out = trivial_augment(images, torch.Generator().manual_seed(1))
    assert out.dtype == torch.uint8 and out.shape == images.shape
    changed = (out != images).flatten(1).any(1).float().mean()
    assert 0.75 < changed < 0.97  # identity is 1 of 14 operations, and some draws change nothing
    assert torch.equal(out, trivial_augment(images, torch.Generator().manual_seed(1)))
    assert not torch.equal(out, trivial_augment(images, torch.Generator().manual_seed(2)))


def test_random_erase_zeroes_one_rectangle_in_the_chosen_images():
    images = torch.ones(400, 3, 32, 32)
    out = random_erase(images, 0.5, torch.Generator().manual_seed(0))
    erased = out[:, 0] == 0
    assert torch.equal(erased, out[:, 2] == 0)
    counts = erased.flatten(1).sum(1)
    assert 150 < (counts > 0).sum() < 250  # about half the images
    for image in erased[counts > 0]:
        rows, cols = image.any(1).nonzero().flatten(), image.any(0).nonzero().flatten()
        assert image.sum() == len(rows) * len(cols) and rows.diff().eq(1).all() and cols.diff().eq(1).all()
        assert 0.015 * 1024 <= image.sum() <= 0.34 * 1024 + 32  # 2-33 % of the image, rounded
    assert torch.equal(random_erase(images, 0.0, torch.Generator().manual_seed(0)), images)
    assert (random_erase(images, 1.0, torch.Generator().manual_seed(0))[:, 0] == 0).flatten(1).any(1).all()


@pytest.mark.parametrize("mixup, cutmix", [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mix_gives_class_probabilities_seeded_and_leaves_the_global_generator(mixup, cutmix):
    images, targets = torch.randn(16, 3, 8, 8), torch.arange(16) % 10
    policy = Policy(mixup=mixup, cutmix=cutmix, classes=10)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    x, y = mix(images, targets, policy, torch.Generator().manual_seed(3))
    assert torch.equal(torch.rand(1), before)  # torch's global generator is neither used nor moved
    assert y.shape == (16, 10) and torch.allclose(y.sum(1), torch.ones(16))
    own = y[torch.arange(16), targets]
    neighbour = y[torch.arange(16), targets.roll(1)]
    assert torch.allclose(own + neighbour, torch.ones(16))  # each image is mixed with the previous one
    lam = float(own[0])
    if mixup and not cutmix:
        assert torch.allclose(x, lam * images + (1 - lam) * images.roll(1, 0), atol=1e-6)
    x2, y2 = mix(images, targets, policy, torch.Generator().manual_seed(3))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    lams = {round(float(mix(images, targets, policy, torch.Generator().manual_seed(s))[1][0, 0]), 6) for s in range(8)}
    assert len(lams) > 4


def test_loader_with_every_augmentation_is_seeded_and_mixes_targets():
    images, targets = random_images(50, size=16), torch.arange(50) % 10
    policy = replace(BATCHED_POLICIES["trivial"], cutout=0.25, erase=0.5, mixup=0.2, cutmix=1.0, classes=10)
    def epoch(seed):
        return list(BatchLoader(images, targets, 16, (0.5,) * 3, (0.25,) * 3, policy, torch.Generator().manual_seed(seed)))
    batches, again = epoch(4), epoch(4)
    assert [y.shape for _, y in batches] == [(16, 10)] * 3 + [(2, 10)]
    assert all(torch.equal(a, b) and torch.equal(s, t) for (a, s), (b, t) in zip(batches, again))
    assert not all(torch.equal(a, b) for (a, _), (b, _) in zip(batches, epoch(5)))


def test_batched_augmentations_are_the_configs():
    assert tuple(BATCHED_POLICIES) == BATCHED_AUGMENTATIONS


@pytest.mark.parametrize("options, message", [
    (dict(erase=1.5), r"--erase 1.5: must be a probability, in \[0, 1\]"),
    (dict(erase=math.nan), "--erase nan"),
    (dict(mixup=-0.2), "--mixup -0.2: must be a finite number ≥ 0"),
    (dict(cutmix=math.inf), "--cutmix inf"),
    (dict(mixup=0.2, erase=0.25, aug="albu-strong"),
     "--erase, --mixup run on the device with the batched policies: pass --aug none or crop-flip or shift-flip or "
     "shift-altflip or shift4-altflip-cutout or cutout or trivial"),
])
def test_bad_augmentation_options_are_refused(options, message):
    with pytest.raises(PipelineError, match=message):
        TrainConfig(**options).validate()
