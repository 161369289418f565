"""VGG-16 for small images (the CIFAR adaptation ImCLR uses): 13 conv-BN-ReLU layers, five max-pools,
then a *flatten* head Linear(C x h x w, 512)-BN-ReLU. Because the head flattens instead of pooling,
its first linear layer grows with the input width: ImCLR's Table 1 counts 15,038,116 parameters
at 32x32 with 100 classes and +262,144 (= 512 x 512) when two images are concatenated.
"""

from __future__ import annotations

import torch.nn as nn

from raycl.errors import ConfigError

CFG16: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    out_dim: int

    def __init__(
        self, in_channels: int = 3, input_size: tuple[int, int] = (32, 32), width: int = 64, hidden: int = 512
    ):
        super().__init__()
        h, w = input_size
        if h < 32 or w < 32:
            raise ConfigError(
                f"model.backbone vgg16 halves the image five times: it needs images of at "
                f"least 32x32, got {h}x{w} (data.image_size)"
            )
        layers: list[nn.Module] = []
        c = in_channels
        for v in CFG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
                continue
            v = int(v) * width // 64
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            c = v
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(c * h * w, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)
        )
        self.out_dim = hidden

    def forward(self, x):
        return self.head(self.features(x))
