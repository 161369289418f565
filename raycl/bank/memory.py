"""A memory bank of N L2-normalised features keyed by global sample index (InterCLR, NPID).

This is the replicated layout: every worker holds all N rows and applies the all-gathered batch,
so all copies stay identical. Rows are buffers, so they travel in every checkpoint."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class MemoryBank(nn.Module):
    def __init__(self, size: int, dim: int, momentum: float = 0.5):
        super().__init__()
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"bank momentum w must be in (0, 1], got {momentum}")
        self.w = momentum
        self.register_buffer("rows", F.normalize(torch.randn(size, dim), dim=1))

    def __len__(self) -> int:
        return self.rows.shape[0]

    def check(self, index: torch.Tensor, v: torch.Tensor | None = None) -> None:
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            bad = int(index.max()) if int(index.max()) >= len(self) else int(index.min())
            raise IndexError(f"sample index {bad} is outside the memory bank (0..{len(self) - 1}); "
                             "set method.bank_size to the number of training samples")
        if v is not None and v.shape[-1] != self.rows.shape[1]:
            raise ValueError(f"embedding dimension {v.shape[-1]} != bank dimension {self.rows.shape[1]}")

    @torch.no_grad()
    def update(self, index: torch.Tensor, v: torch.Tensor) -> None:
        """v^_i <- normalize((1 - w) v^_i + w v_i) (InterCLR eq. 1). A sample present several times
        in one batch is updated once, with the mean of its embeddings."""
        self.check(index, v)
        uniq, inv = torch.unique(index, return_inverse=True)
        summed = torch.zeros(len(uniq), v.shape[1], device=v.device, dtype=v.dtype).index_add_(0, inv, v)
        counts = torch.zeros(len(uniq), device=v.device, dtype=v.dtype).index_add_(0, inv, torch.ones_like(inv, dtype=v.dtype))
        mean = (summed / counts[:, None]).to(self.rows.dtype)
        self.rows[uniq] = F.normalize((1 - self.w) * self.rows[uniq] + self.w * mean, dim=1)
