"""Small, fast convolutional nets for small images, after KellerJordan/cifar10-airbench.

`fastnet` (airbench94's): a 2×2 convolution whose filters whiten the training images' patches (set from data,
then frozen), then three groups of conv → max-pool → BatchNorm → GELU → conv → BatchNorm → GELU (64, 256, 256
channels), a global max-pool and a linear head whose logits are scaled by 1/9. Convolutions start as identities
on their first channels (an implicit residual); the BatchNorms learn only their biases. At 32×32 it costs about
a fifth of the CIFAR ResNet-18's multiply-adds.
`fastnet-wide` (airbench96's): the same with 128, 384, 512 channels and a third conv → BatchNorm in each group,
whose output is added to the group's first activation before the last GELU (a residual); about 3.8× fastnet's
multiply-adds.
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.errors import PipelineError

WHITENING_KERNEL = 2
MIN_INPUT = WHITENING_KERNEL + 7  # three halvings of the whitened map must leave at least one pixel


class Conv(nn.Conv2d):
    """A 3×3 'same' convolution without bias, starting as the identity on its first input channels."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        nn.init.dirac_(self.weight.data[:min(self.in_channels, self.out_channels)])


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm with a fixed unit scale (only the bias learns) and fast-moving running statistics."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)


class ConvGroup(nn.Module):
    """conv → pool → norm → GELU → conv → norm → GELU; `residual`: a third conv → norm after the second GELU,
    added to the first GELU's output before the last GELU."""

    def __init__(self, in_channels: int, out_channels: int, residual: bool = False):
        super().__init__()
        self.conv1 = Conv(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(out_channels)
        self.conv2 = Conv(out_channels, out_channels)
        self.norm2 = BatchNorm(out_channels)
        if residual:
            self.conv3 = Conv(out_channels, out_channels)
            self.norm3 = BatchNorm(out_channels)
        self.residual = residual
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.norm1(self.pool(self.conv1(x))))
        if not self.residual:
            return self.activation(self.norm2(self.conv2(x)))
        out = self.norm3(self.conv3(self.activation(self.norm2(self.conv2(x)))))
        return self.activation(out + x)


class FastNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 3, widths: tuple[int, int, int] = (64, 256, 256),
                 logit_scale: float = 1 / 9, residual: bool = False):
        super().__init__()
        whitened = 2 * in_chans * WHITENING_KERNEL**2  # each patch eigenvector and its negative
        self.whiten = nn.Conv2d(in_chans, whitened, WHITENING_KERNEL, bias=True)
        self.whiten.weight.requires_grad_(False)
        nn.init.zeros_(self.whiten.bias)
        self.activation = nn.GELU()
        self.layer1 = ConvGroup(whitened, widths[0], residual)
        self.layer2 = ConvGroup(widths[0], widths[1], residual)
        self.layer3 = ConvGroup(widths[1], widths[2], residual)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes, bias=False)
        self.logit_scale = logit_scale

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from normalised training images (N, C, H, W): the eigenvectors of their
        patches' covariance, each scaled by 1/√(eigenvalue + eps), and the same negated."""
        k = WHITENING_KERNEL
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1).transpose(1, 3).reshape(-1, images.shape[1] * k * k)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance.double())
        filters = (eigenvectors.T / torch.sqrt(eigenvalues.clamp_min(0) + eps)[:, None]).flip(0)
        filters = filters.reshape(-1, images.shape[1], k, k).to(self.whiten.weight)
        self.whiten.weight.copy_(torch.cat([filters, -filters]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < MIN_INPUT:
            raise PipelineError(f"--model fastnet needs images of {MIN_INPUT}×{MIN_INPUT} pixels or more, got "
                                f"{x.shape[-2]}×{x.shape[-1]}; enlarge them with --img-size 32")
        x = self.activation(self.whiten(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1)) * self.logit_scale


def _stemless(stem: str, name: str) -> None:
    if stem != "imagenet":
        raise PipelineError(f"--stem {stem} applies to the ResNets, not {name} (its first layer is a whitening "
                            "convolution)")


def fastnet(num_classes: int = 10, stem: str = "imagenet", in_chans: int = 3) -> FastNet:
    _stemless(stem, "fastnet")
    return FastNet(num_classes, in_chans)


def fastnet_wide(num_classes: int = 10, stem: str = "imagenet", in_chans: int = 3) -> FastNet:
    _stemless(stem, "fastnet-wide")
    return FastNet(num_classes, in_chans, widths=(128, 384, 512), residual=True)
