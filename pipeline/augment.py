"""Augmentation as batched tensor ops on the device holding the data (airbench-style).

A `BatchLoader` keeps a whole split as uint8 (N, C, H, W) on its device and yields normalized,
augmented batches: no per-image Python, no worker processes. Every random draw comes from one CPU
generator, so a given (seed, epoch) gives the same batches on any device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def on_device(draws: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Random draws made on the CPU, on `device`. To a GPU through pinned memory without blocking: a blocking copy
    from pageable memory waits for every kernel queued before it, so each batch would wait for the last step."""
    if device.type != "cuda":
        return draws.to(device)
    return draws.pin_memory().to(device, non_blocking=True)


@dataclass(frozen=True)
class Policy:
    pad: int = 4  # random crop of the original size from the image padded by `pad`
    reflect: bool = False  # pad by mirroring the border pixels (airbench) instead of with zeros
    flip: bool = True
    alternate_flip: bool = False  # each image mirrored in every other epoch (half of them from the first) instead of at random
    cutout: float = 0.0  # side of the erased square, as a fraction of the image side (0: none)
    trivial: bool = False  # TrivialAugment (wide): one random operation per image, at a random strength
    erase: float = 0.0  # probability of random erasing, per image
    mixup: float = 0.0  # α of mixup's Beta(α, α) (0: off)
    cutmix: float = 0.0  # α of cutmix's Beta(α, α) (0: off); with mixup too, each batch takes one of the two
    classes: int = 0  # the number of classes: mixup and cutmix turn targets into class probabilities


BATCHED_POLICIES = {
    "none": Policy(pad=0, flip=False),
    "crop-flip": Policy(),  # RandomCrop(size, padding=4) + RandomHorizontalFlip
    "shift-flip": Policy(pad=2, reflect=True),  # airbench's translation by up to 2 px
    "shift-altflip": Policy(pad=2, reflect=True, alternate_flip=True),  # + airbench's alternating flip
    "shift4-altflip-cutout": Policy(pad=4, reflect=True, alternate_flip=True, cutout=12 / 32),  # airbench96's
    "cutout": Policy(cutout=0.5),  # + Cutout (DeVries & Taylor 2017: 16 px on CIFAR-10)
    "trivial": Policy(trivial=True),  # + TrivialAugmentWide (Müller & Hutter 2021)
}


def random_crop(images: torch.Tensor, pad: int, generator: torch.Generator, reflect: bool = False) -> torch.Tensor:
    """Per-image random crops of (H, W) from the batch padded by `pad` on each side (with zeros, or by
    mirroring its border with `reflect`)."""
    n, _, h, w = images.shape
    shifts = on_device(torch.randint(0, 2 * pad + 1, (2, n), generator=generator), images.device)
    rows = (shifts[0][:, None] + torch.arange(h, device=images.device))[:, :, None]
    cols = (shifts[1][:, None] + torch.arange(w, device=images.device))[:, None, :]
    padding = (pad, pad, pad, pad)
    # reflect padding is not implemented for uint8: pad as float, exact for 0 … 255
    padded = F.pad(images.float(), padding, mode="reflect").to(images.dtype) if reflect else F.pad(images, padding)
    padded = padded.permute(0, 2, 3, 1)  # N, H+2p, W+2p, C
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded[batch, rows, cols].permute(0, 3, 1, 2)


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    return flip_where(images, torch.rand(len(images), generator=generator) < 0.5)


def flip_where(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images whose entry of the boolean `flip` is true."""
    return torch.where(on_device(flip, images.device)[:, None, None, None], images.flip(3), images)


def alternating_flips(count: int, seed: int, epoch: int) -> torch.Tensor:
    """Which of `count` images to mirror in `epoch`: a seeded random half in even epochs, the other half in odd ones,
    so that every two epochs show each image both ways (airbench's alternating flip)."""
    first = torch.rand(count, generator=torch.Generator().manual_seed(seed)) < 0.5
    return first ^ bool(epoch % 2)


def cutout(images: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Zero one square per image, its centre anywhere in the image (the square may be clipped)."""
    n, _, h, w = images.shape
    size_h, size_w = max(1, round(h * fraction)), max(1, round(w * fraction))
    centres = on_device(torch.rand(2, n, generator=generator), images.device)
    top = (centres[0] * h).long() - size_h // 2
    left = (centres[1] * w).long() - size_w // 2
    ys = torch.arange(h, device=images.device)[None, :]
    xs = torch.arange(w, device=images.device)[None, :]
    inside_rows = (ys >= top[:, None]) & (ys < top[:, None] + size_h)
    inside_cols = (xs >= left[:, None]) & (xs < left[:, None] + size_w)
    erased = inside_rows[:, :, None] & inside_cols[:, None, :]
    return images.masked_fill(erased[:, None], 0)


def random_erase(images: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """Random erasing (Zhong et al. 2017, torchvision's RandomErasing defaults): with `probability`, zero a
    rectangle of 2–33 % of the image with aspect ratio 0.3–3.3 (clipped to the image), anywhere inside it."""
    n, _, h, w = images.shape
    draws = torch.rand(5, n, generator=generator)
    area = h * w * (0.02 + draws[0] * (1 / 3 - 0.02))
    ratio = torch.exp(math.log(0.3) + draws[1] * (math.log(1 / 0.3) - math.log(0.3)))
    size_h = (area * ratio).sqrt().round().clamp(1, h).long()
    size_w = (area / ratio).sqrt().round().clamp(1, w).long()
    top = (draws[2] * (h - size_h + 1)).long()
    left = (draws[3] * (w - size_w + 1)).long()
    erased_images = draws[4] < probability
    ys, xs = torch.arange(h)[None, :], torch.arange(w)[None, :]
    inside_rows = (ys >= top[:, None]) & (ys < (top + size_h)[:, None])
    inside_cols = (xs >= left[:, None]) & (xs < (left + size_w)[:, None])
    erased = inside_rows[:, :, None] & inside_cols[:, None, :] & erased_images[:, None, None]
    return images.masked_fill(on_device(erased[:, None], images.device), 0)


def mix(images: torch.Tensor, targets: torch.Tensor, policy: Policy,
        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's MixUp and/or CutMix on the batch (one λ per batch, each image paired with its neighbour),
    its draws seeded from `generator`; targets become (N, classes) probabilities."""
    import torchvision.transforms.v2 as v2  # seconds to import: only where a policy mixes

    transforms = ([v2.MixUp(alpha=policy.mixup, num_classes=policy.classes)] if policy.mixup else []) + \
                 ([v2.CutMix(alpha=policy.cutmix, num_classes=policy.classes)] if policy.cutmix else [])
    transform = transforms[0] if len(transforms) == 1 else v2.RandomChoice(transforms)
    with torch.random.fork_rng(devices=[]):  # torchvision draws from torch's global CPU generator
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        return transform(images, targets)


# TrivialAugmentWide's operations (torchvision's, after Müller & Hutter 2021): each image draws one, and a
# strength `level` in {0, 1/30, …, 1} with a random sign. The batch is transformed at once: each operation on the
# images that drew it, at each image's own strength. Each takes uint8 images, levels in [0, 1] and signs ±1.
def _blend(images: torch.Tensor, degenerate: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's blend with a factor per image: factor·image + (1 − factor)·degenerate, as uint8."""
    factor = factor[:, None, None, None]
    return images.float().mul(factor).add_(degenerate.float().mul(1 - factor)).clamp_(0, 255).to(torch.uint8)


def _grey(images: torch.Tensor) -> torch.Tensor:
    """Floored luma (ITU-R 601, as torchvision's colour operations take it)."""
    if images.shape[1] == 1:
        return images.float()
    red, green, blue = images.float().unbind(1)
    return red.mul(0.2989).add_(green, alpha=0.587).add_(blue, alpha=0.114).floor_()[:, None]


def _library_operation(name: str):
    """A torchvision.transforms.v2.functional operation without a strength (imported on first use)."""
    def apply(images, level, sign):
        import torchvision.transforms.v2.functional as TF

        return getattr(TF, name)(images)
    return apply


def _sharpness(images, level, sign):
    import torchvision.transforms.v2.functional as TF

    return _blend(images, TF.adjust_sharpness(images, 0.0), 1 + 0.99 * level * sign)  # 0: the blurred image


def _warp(images: torch.Tensor, matrix: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each output pixel p (in pixels from the image centre) takes input pixel matrix·p + shift: nearest
    neighbour, zero outside, as torchvision's TrivialAugmentWide."""
    h, w = images.shape[-2:]
    scale = torch.tensor([w / 2, h / 2], device=images.device)
    theta = torch.cat([matrix * scale[None, None, :] / scale[None, :, None], (shift / scale)[:, :, None]], 2)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images.float(), grid, mode="nearest", align_corners=False).round_().to(torch.uint8)


def _shear(images, level, sign, axis: int):
    matrix = torch.eye(2, device=images.device).repeat(len(images), 1, 1)
    matrix[:, axis, 1 - axis] = 0.99 * level * sign
    return _warp(images, matrix, torch.zeros(len(images), 2, device=images.device))


def _translate(images, level, sign, axis: int):
    """Shift by up to the image's side (TrivialAugmentWide's 32 px on 32-px images)."""
    shift = torch.zeros(len(images), 2, device=images.device)
    shift[:, axis] = level * sign * images.shape[-1 - axis]
    return _warp(images, torch.eye(2, device=images.device).repeat(len(images), 1, 1), shift)


def _rotate(images, level, sign):
    angle = torch.deg2rad(135 * level * sign)
    cos, sin = angle.cos(), angle.sin()
    matrix = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    return _warp(images, matrix, torch.zeros(len(images), 2, device=images.device))


def _posterize(images, level, sign):
    bits = 8 - (level * 6).round().long()  # 8 … 2 bits kept
    masks = (255 - (2 ** (8 - bits) - 1)).to(torch.uint8)
    return images & masks[:, None, None, None]


def _solarize(images, level, sign):
    threshold = (255 * (1 - level))[:, None, None, None]
    return torch.where(images.float() >= threshold, 255 - images, images)


TRIVIAL_OPERATIONS = (
    lambda x, level, sign: x,  # identity
    lambda x, level, sign: _shear(x, level, sign, 0),
    lambda x, level, sign: _shear(x, level, sign, 1),
    lambda x, level, sign: _translate(x, level, sign, 0),
    lambda x, level, sign: _translate(x, level, sign, 1),
    _rotate,
    lambda x, level, sign: _blend(x, torch.zeros_like(x), 1 + 0.99 * level * sign),  # brightness
    lambda x, level, sign: _blend(x, _grey(x).expand_as(x), 1 + 0.99 * level * sign),  # colour (saturation)
    lambda x, level, sign: _blend(x, _grey(x).mean((1, 2, 3), keepdim=True).expand_as(x),
                                  1 + 0.99 * level * sign),  # contrast
    _sharpness,
    _posterize,
    _solarize,
    _library_operation("autocontrast"),
    _library_operation("equalize"),
)
TRIVIAL_LEVELS = 31


def trivial_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """TrivialAugmentWide on a uint8 batch: each image its own operation and strength."""
    n = len(images)
    operation = torch.randint(len(TRIVIAL_OPERATIONS), (n,), generator=generator)
    level = on_device(torch.randint(TRIVIAL_LEVELS, (n,), generator=generator) / (TRIVIAL_LEVELS - 1), images.device)
    sign = on_device(torch.randint(2, (n,), generator=generator) * 2 - 1, images.device)
    out = images.clone()
    for k, apply in enumerate(TRIVIAL_OPERATIONS[1:], 1):
        chosen = on_device((operation == k).nonzero()[:, 0], images.device)
        if len(chosen):
            out[chosen] = apply(images[chosen], level[chosen], sign[chosen])
    return out


def resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Float batch resized to size×size (bilinear; antialiased when shrinking); None keeps it."""
    if size is None or images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < images.shape[-1])


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) with `channels` channels: grey from RGB by ITU-R 601 luma (as PIL's "L"),
    RGB from grey by repetition."""
    if images.shape[1] == channels:
        return images
    if channels == 1 and images.shape[1] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114], device=images.device)[None, :, None, None]
        return (images.float() * weights).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    if channels == 3 and images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    raise ValueError(f"cannot turn {images.shape[1]}-channel images into {channels}-channel ones")


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """uint8 (N, C, H, W) to float, standardized per channel."""
    out = images.float().div_(255).sub_(mean[:, None, None]).div_(std[:, None, None])
    return out.contiguous(memory_format=memory_format)


class BatchLoader:
    """Batches (images, targets) of a uint8 (N, C, H, W) split held on one device.

    `generator=None` gives the split in order with no augmentation (evaluation); otherwise each
    pass over it draws a permutation and the policy's augmentations from that generator. A policy with
    `alternate_flip` mirrors the images `flips` (one boolean per image of the split) marks, instead of at random.
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, batch_size: int,
                 mean: tuple[float, ...], std: tuple[float, ...], policy: Policy | None = None,
                 generator: torch.Generator | None = None,
                 memory_format: torch.memory_format = torch.contiguous_format, img_size: int | None = None,
                 shard: tuple[int, int] = (0, 1), flips: torch.Tensor | None = None):
        if policy is not None and policy.alternate_flip and (flips is None or len(flips) != len(images)):
            raise ValueError("a policy with alternate_flip needs `flips`, one per image")
        self.images, self.targets, self.flips = images, targets, flips
        self.img_size = img_size
        self.rank, self.world = shard  # this process takes images rank, rank + world, … of every batch
        self.batch_size = batch_size
        self.mean = torch.tensor(mean, device=images.device)
        self.std = torch.tensor(std, device=images.device)
        self.policy = policy
        self.generator = generator
        self.memory_format = memory_format  # channels_last pays on CUDA; on CPU it was slower here

    def __len__(self) -> int:
        n, full = len(self.images), len(self.images) // self.batch_size
        # a tail that cannot give every rank 2 images is dropped: BatchNorm cannot train on a batch of 1
        return full + (1 if n % self.batch_size >= 2 * self.world else 0)

    def __iter__(self):
        n = len(self.images)
        order = torch.randperm(n, generator=self.generator) if self.generator is not None else torch.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            chosen = order[start:start + self.batch_size]  # on the CPU, like `flips`
            index = on_device(chosen, self.images.device)
            # the whole batch draws its augmentation, so N processes see exactly what one process sees
            images, targets = self.augment(self.images[index], self.targets[index], chosen)
            if self.world > 1:
                images, targets = images[self.rank::self.world], targets[self.rank::self.world]
            yield images, targets

    def augment(self, images: torch.Tensor, targets: torch.Tensor,
                index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop, flip and TrivialAugment as uint8; normalize; cut out and erase (erased pixels become the mean,
        as in Cutout); mix (targets become probabilities); resize. `index`: the images' places in the split, on
        the CPU."""
        policy = self.policy if self.generator is not None else None
        if policy and policy.pad:
            images = random_crop(images, policy.pad, self.generator, policy.reflect)
        if policy and policy.alternate_flip:
            images = flip_where(images, self.flips[index])
        elif policy and policy.flip:
            images = random_flip(images, self.generator)
        if policy and policy.trivial:
            images = trivial_augment(images, self.generator)
        images = normalize(images, self.mean, self.std, self.memory_format)
        if policy and policy.cutout:
            images = cutout(images, policy.cutout, self.generator)
        if policy and policy.erase:
            images = random_erase(images, policy.erase, self.generator)
        if policy and (policy.mixup or policy.cutmix):
            images, targets = mix(images, targets, policy, self.generator)
        return resize(images, self.img_size).contiguous(memory_format=self.memory_format), targets


def to_device_tensor(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, C) images (a host array, or a tensor anywhere) as a uint8 (N, C, H, W) tensor on `device`."""
    if isinstance(images, torch.Tensor):
        return images.to(device).permute(0, 3, 1, 2).contiguous()
    host = np.require(images, requirements=["C_CONTIGUOUS", "WRITEABLE"])  # copies a read-only memory map
    return torch.from_numpy(host).to(device).permute(0, 3, 1, 2).contiguous()
