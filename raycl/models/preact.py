"""Pre-activation ResNet-18 for small images (He et al. 2016b; the layout of the popular CIFAR
implementations: 3x3 stem, BN-ReLU before each conv, global average pooling). Its parameter count
does not depend on the input size, so ImCLR adds none (Table 1: PRN18 +0)."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class PreActResNet18(nn.Module):
    out_dim: int

    def __init__(self, in_channels: int = 3, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        blocks, c = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2**i
            blocks += [PreActBlock(c, cout, stride), PreActBlock(cout, cout, 1)]
            c = cout
        self.layers = nn.Sequential(*blocks)
        self.out_dim = c

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.layers(self.conv1(x)), 1).flatten(1)
