"""``raycl export``: a checkpoint's backbone alone, as tensors other code loads without raycl.

raycl's ResNets are torchvision's ``ResNet`` with two knobs (``model.stem``, ``model.width``), so
their parameter names are torchvision's already: a ResNet-18/50 trained at width 64 with the ImageNet
stem on 3-channel images loads into ``torchvision.models.resnet18()`` / ``resnet50()`` with
``strict=True`` apart from ``fc`` (Detectron2 and mmdet convert from that layout). Two formats, both
tensors only (never a pickled object):

- ``safetensors`` (default): every backbone, with what built it in the file's metadata.
- ``torchvision``: a ``.pth`` holding a plain {name: tensor} dict (torch's loader reads it with weights_only),
  for the torchvision-shaped ResNets only; another shape is one error naming what differs.
"""

from __future__ import annotations

import os

import torch
from safetensors.torch import save_file

from raycl.config import Config
from raycl.errors import ConfigError

FORMATS = ("safetensors", "torchvision")


def torchvision_mismatch(cfg: Config) -> list[str]:
    """What keeps this backbone from loading into torchvision's model of its name (empty: nothing)."""
    m = cfg.model
    if m.backbone not in ("resnet18", "resnet50"):
        return [f"model.backbone {m.backbone} (torchvision's layout: resnet18, resnet50)"]
    wants = (("model.stem", m.stem, "imagenet"), ("model.width", m.width, 64), ("data.channels", cfg.data.channels, 3))
    return [f"{name} {value} (torchvision: {want})" for name, value, want in wants if value != want]


def export_backbone(cfg: Config, backbone: torch.nn.Module, out: str, fmt: str = "safetensors") -> dict:
    """Write ``backbone``'s tensors (parameters and BatchNorm buffers) to ``out``, atomically."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    mismatch = torchvision_mismatch(cfg)
    if fmt == "torchvision" and mismatch:
        raise ConfigError(
            f"--format torchvision: this checkpoint does not have torchvision's shape: {'; '.join(mismatch)}; "
            "use --format safetensors (the same names, raycl's shapes, what built it in the metadata)"
        )
    tensors = {name: t.detach().cpu().contiguous() for name, t in backbone.state_dict().items()}
    path = os.path.abspath(os.path.expanduser(out))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise ConfigError(f"OUT: the folder {folder!r} does not exist")
    tmp = path + ".tmp"
    if fmt == "torchvision":
        torch.save(tensors, tmp)
    else:
        save_file(tensors, tmp, metadata=_metadata(cfg, mismatch))
    os.replace(tmp, path)
    return {
        "out": path, "format": fmt, "backbone": cfg.model.backbone, "tensors": len(tensors),
        "parameters": sum(p.numel() for p in backbone.parameters()),
        "torchvision_loadable": not mismatch,
    }  # fmt: skip


def _metadata(cfg: Config, mismatch: list[str]) -> dict[str, str]:
    m = cfg.model
    return {
        "format": "raycl backbone", "backbone": m.backbone, "stem": m.stem, "width": str(m.width),
        "channels": str(cfg.data.channels), "image_size": str(cfg.data.image_size), "method": cfg.method.name,
        "layout": "torchvision" if not mismatch else "raycl (torchvision names where the module is torchvision's)",
    }  # fmt: skip
