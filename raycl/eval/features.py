"""Backbone features of a source, without augmentation, streamed a batch of rows at a time."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from raycl.data.source import Source, subset
from raycl.data.views import eval_view


def rows_per_forward(channels: int, size: int, budget_bytes: int = 1 << 26) -> int:
    """Rows whose float input fits ``budget_bytes`` (64 MiB): 512 digits, 111 ImageNet crops."""
    return int(max(16, min(512, budget_bytes // (4 * channels * size * size))))


@torch.no_grad()
def extract(
    backbone: torch.nn.Module,
    source: Source,
    part: tuple[int, int] = (0, 1),
    batch_size: int = 512,
    device="cpu",
    max_rows: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of a seeded random sample of ``max_rows`` rows (all rows when None),
    corrupt rows left out. ``part=(rank, world)``: this worker's contiguous share of those rows, so
    the shares gathered in rank order are the single-process result. Only ``batch_size`` decoded
    rows are held at a time; ``progress(rows done, rows)`` is called after each batch."""
    was_training = backbone.training
    backbone.eval()
    src = subset(source, max_rows, seed)
    n = len(src)
    lo, hi = part[0] * n // part[1], (part[0] + 1) * n // part[1]
    feats, labels = [], []
    for s in range(lo, hi, batch_size):
        blk = src.read_positions(np.arange(s, min(s + batch_size, hi)))
        x = torch.from_numpy(blk.images[blk.valid]).to(device)
        if len(x):
            feats.append(backbone(eval_view(x)).float().cpu())
        labels.append(blk.labels[blk.valid])
        if progress is not None:
            progress(min(s + batch_size, hi) - lo, hi - lo)
    backbone.train(was_training)
    dim = getattr(backbone, "out_dim", 0)
    out = torch.cat(feats) if feats else torch.zeros(0, dim)
    return out, torch.from_numpy(np.concatenate(labels) if labels else np.zeros(0, np.int64))
