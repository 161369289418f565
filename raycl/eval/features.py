"""Backbone features of a whole source, without augmentation."""
from __future__ import annotations

import numpy as np
import torch

from raycl.data.source import Source
from raycl.data.views import eval_view


@torch.no_grad()
def extract(backbone: torch.nn.Module, source: Source, part: tuple[int, int] = (0, 1), batch_size: int = 512,
            device="cpu", max_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of the first ``max_rows`` valid rows (corrupt rows are left out);
    ``part=(rank, world)`` takes every world-th of them, for splitting the work across workers."""
    was_training = backbone.training
    backbone.eval()
    data = source.read_all()
    keep = np.flatnonzero(data.valid)
    if max_rows is not None:
        keep = keep[:max_rows]
    keep = keep[part[0]::part[1]]
    feats = []
    for s in range(0, len(keep), batch_size):
        x = torch.from_numpy(data.images[keep[s:s + batch_size]]).to(device)
        feats.append(backbone(eval_view(x)).float().cpu())
    backbone.train(was_training)
    dim = getattr(backbone, "out_dim", 0)
    out = torch.cat(feats) if feats else torch.zeros(0, dim)
    return out, torch.from_numpy(data.labels[keep])
