"""Pure loss functions: tensors in, scalar out; no state, no globals, no collectives.

Each docstring cites the equation it implements. Distributed callers pass gathered tensors in
(see ``raycl.dist.all_gather``) and pick their local anchors with ``anchor_rows``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, anchor_rows: slice | None = None) -> torch.Tensor:
    """SimCLR's NT-Xent (Chen et al. 2020, eq. 1), averaged over the 2N anchors.

        l(i, j) = -log exp(sim(z_i, z_j)/tau) / sum_{k != i} exp(sim(z_i, z_k)/tau)

    over the 2N embeddings [z1; z2], where (i, j) are the two views of one image and sim is the
    cosine similarity. ``anchor_rows`` (a slice of 0..N-1) restricts the anchors to those rows of
    both views while every embedding stays a negative: the per-worker share of the global loss.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    rows = torch.arange(n, device=z.device)[anchor_rows if anchor_rows is not None else slice(None)]
    anchors = torch.cat([rows, rows + n])
    positives = torch.cat([rows + n, rows])
    logits = z[anchors] @ z.t() / temperature
    logits[torch.arange(len(anchors), device=z.device), anchors] = float("-inf")  # k != i
    return F.cross_entropy(logits, positives)
