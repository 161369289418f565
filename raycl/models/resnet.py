"""torchvision ResNet backbones with two raycl knobs: the small-image stem (3x3 conv, stride 1,
no max-pool, as SimCLR uses for CIFAR) and a base width (64 in torchvision) to fit small machines."""

from __future__ import annotations

import torch.nn as nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

ARCHS = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet50": (Bottleneck, [3, 4, 6, 3])}


class Backbone(ResNet):
    """A ResNet trunk returning pooled features (``fc`` is an identity); ``out_dim`` holds their size."""

    out_dim: int

    def __init__(self, arch: str = "resnet18", in_channels: int = 3, stem: str = "imagenet", width: int = 64):
        if arch not in ARCHS:
            raise ValueError(f"unknown backbone {arch!r}; available: {', '.join(ARCHS)}")
        block, layers = ARCHS[arch]
        # ResNet.__init__ calls _make_layer with planes 64..512: scale them by width/64.
        object.__setattr__(self, "_width", width)
        super().__init__(block, layers)
        if stem == "small":
            self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.out_dim = 8 * width * block.expansion
        self.fc = nn.Identity()

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if planes == 64:
            self.inplanes = self._width
        return super()._make_layer(block, planes * self._width // 64, blocks, stride, dilate)
