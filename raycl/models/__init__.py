"""Backbones and heads (plain PyTorch)."""
from raycl.models.heads import mlp
from raycl.models.resnet import Backbone


def build_backbone(model_cfg, channels: int) -> Backbone:
    return Backbone(model_cfg.backbone, in_channels=channels, stem=model_cfg.stem, width=model_cfg.width)


__all__ = ["Backbone", "build_backbone", "mlp"]
