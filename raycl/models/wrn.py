"""Wide ResNet WRN-depth-k (Zagoruyko & Komodakis 2016): three groups of (depth - 4) / 6 pre-activation
blocks of width 16k, 32k, 64k, a final BN-ReLU, then pooling.

``pool="global"`` averages the whole map (WRN-28-2 for semi-supervised CIFAR-10: 1,467,610
parameters, ImCLR Table 1). ``pool="avg8"`` averages 8x8 windows and flattens what is left, the
head of ImCLR's WRN-16-8 on STL-10 (96 px: 3x3 windows, 11,002,330 parameters, +46,080 with k = 2).
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from raycl.errors import ConfigError


class WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        return self.conv2(F.relu(self.bn2(self.conv1(out)))) + skip


class WideResNet(nn.Module):
    out_dim: int

    def __init__(
        self, depth: int, k: int, in_channels: int = 3, pool: str = "global", input_size: tuple[int, int] = (32, 32)
    ):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ConfigError(f"model.backbone wrn{depth}_{k}: depth must be 6n + 4 with n >= 1 (10, 16, 28, ...)")
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        blocks, c = [], 16
        for i, stride in enumerate((1, 2, 2)):
            cout = 16 * k * 2**i
            blocks += [WideBlock(c if j == 0 else cout, cout, stride if j == 0 else 1) for j in range(n)]
            c = cout
        self.layers, self.bn = nn.Sequential(*blocks), nn.BatchNorm2d(c)
        self.pool = pool
        h, w = (input_size[0] + 3) // 4, (input_size[1] + 3) // 4  # two stride-2 stages
        if pool == "avg8":
            if h < 8 or w < 8:
                raise ConfigError(
                    f"model.pool avg8 needs a final map of at least 8x8 (images >= 32 px), "
                    f"got {h}x{w} from input {input_size[0]}x{input_size[1]}"
                )
            self.out_dim = c * (h // 8) * (w // 8)
        else:
            self.out_dim = c

    def forward(self, x):
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        if self.pool == "avg8":
            return F.avg_pool2d(out, 8).flatten(1)
        return F.adaptive_avg_pool2d(out, 1).flatten(1)
