"""Backbones and heads (plain PyTorch)."""

from __future__ import annotations

from raycl.config.sections import BACKBONES, WRN, check_backbone
from raycl.models.heads import mlp
from raycl.models.preact import PreActResNet18
from raycl.models.resnet import Backbone
from raycl.models.vgg import VGG
from raycl.models.wrn import WideResNet

AnyBackbone = Backbone | PreActResNet18 | VGG | WideResNet


def build_backbone(cfg, channels: int, concat: int = 1) -> AnyBackbone:
    """The encoder for ``cfg.model.backbone`` on images of ``data.image_size``; ``concat`` images side
    by side (ImCLR) widen the input, which matters for flatten heads. Every backbone returns
    [B, out_dim] features and has an ``out_dim`` attribute."""
    m = cfg.model
    check_backbone(m.backbone)
    size = (cfg.data.image_size, cfg.data.image_size * concat)
    if m.backbone == "vgg16":
        return VGG(channels, size, width=m.width)
    if m.backbone == "preact_resnet18":
        return PreActResNet18(channels, width=m.width)
    wrn = WRN.match(m.backbone)
    if wrn:
        return WideResNet(int(wrn.group(1)), int(wrn.group(2)), channels, m.pool, size)
    return Backbone(m.backbone, in_channels=channels, stem=m.stem, width=m.width)


__all__ = ["BACKBONES", "Backbone", "build_backbone", "check_backbone", "mlp"]
