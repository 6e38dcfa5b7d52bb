"""ResNets of He et al. 2016 (Table 1), with stems for 224×224 and 32×32 inputs: `imagenet` (7×7/2 conv + 3×3/2
max pool), `improved` (one 3×3/1 conv, no pool: layer1 sees the whole 32×32 image, as in the write-up
li554/resnet18-cifar10-classification) and `improved-pool` (the 3×3/1 conv + the max pool).

Layer names follow torchvision's (conv1, bn1, layer1…layer4, fc, `downsample` shortcuts), so
torchvision's ResNet state dicts load into these models unchanged (for ResNet-18/34 they also compute
the same function; see Bottleneck for 50/101/152).
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.config import RENAMED_STEMS, STEMS


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class Bottleneck(nn.Module):
    """1×1 reduce (carrying the stride, as in the paper: Table 1's FLOPs), 3×3, 1×1 expand by 4.

    torchvision's "v1.5" moves the stride to the 3×3 (4.1 instead of 3.8 GFLOPs for ResNet-50); the
    parameter shapes are the same either way.
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    """Identity, or a 1×1 conv + BN projection when the shape changes."""
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes))


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock | Bottleneck], layers: list[int], num_classes: int = 10,
                 stem: str = "imagenet", in_chans: int = 3):
        super().__init__()
        stem = RENAMED_STEMS.get(stem, stem)
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
        self.in_planes = 64
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_chans, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if stem == "improved" else nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(**kw) -> ResNet: return ResNet(BasicBlock, [2, 2, 2, 2], **kw)
def resnet34(**kw) -> ResNet: return ResNet(BasicBlock, [3, 4, 6, 3], **kw)
def resnet50(**kw) -> ResNet: return ResNet(Bottleneck, [3, 4, 6, 3], **kw)
def resnet101(**kw) -> ResNet: return ResNet(Bottleneck, [3, 4, 23, 3], **kw)
def resnet152(**kw) -> ResNet: return ResNet(Bottleneck, [3, 8, 36, 3], **kw)
