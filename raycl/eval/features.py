"""Backbone features of a whole source, without augmentation."""
from __future__ import annotations

import numpy as np
import torch

from raycl.data.source import Source
from raycl.data.views import eval_view


@torch.no_grad()
def extract(backbone: torch.nn.Module, source: Source, rows: np.ndarray | None = None, batch_size: int = 512,
            device="cpu", max_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of ``rows`` (default: all rows; corrupt rows are left out)."""
    was_training = backbone.training
    backbone.eval()
    data = source.read_all()
    keep = np.flatnonzero(data.valid)
    if max_rows is not None:
        keep = keep[:max_rows]
    if rows is not None:
        keep = keep[rows]
    feats = []
    for s in range(0, len(keep), batch_size):
        x = torch.from_numpy(data.images[keep[s:s + batch_size]]).to(device)
        feats.append(backbone(eval_view(x)).float().cpu())
    backbone.train(was_training)
    dim = getattr(backbone, "out_dim", 0)
    out = torch.cat(feats) if feats else torch.zeros(0, dim)
    return out, torch.from_numpy(data.labels[keep])
