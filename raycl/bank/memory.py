"""A memory bank of N L2-normalised features keyed by global sample index (InterCLR, NPID).

Layouts. ``Shard(rank, world)``: this worker owns the rows whose global index i has
i % world == rank (stored at slot i // world), so each holds about N / world rows and any number
of workers can re-shard a saved bank. ``Shard(0, 1)`` on every worker is the replicated layout:
each holds all rows. Either way every worker applies the all-gathered batch, keeping the rows it owns.

Rows are not ``state_dict`` entries (they differ per rank under sharding): ``full()`` gathers the
whole bank for checkpoints and snapshots, ``load_full()`` takes this worker's share of one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from raycl import collectives as dist
from raycl.errors import BankError, BankIndexError

INIT_CHUNK = 65536


def _count(name: str, value, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise BankError(f"{name}: expected an integer >= {lo}, got {value!r}")
    return value


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1

    def __post_init__(self):
        _count("Shard world", self.world)
        _count("Shard rank", self.rank, 0)
        if self.rank >= self.world:
            raise BankError(f"Shard rank {self.rank} is outside 0..{self.world - 1} (world {self.world})")

    @property
    def collective(self) -> bool:
        return self.world > 1

    def rows_of(self, n: int) -> torch.Tensor:
        """Global indices of the rows this shard owns, in slot order."""
        return torch.arange(self.rank, n, self.world)


def random_unit_rows(global_index: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """Random unit vectors as a function of (seed, global row), whatever the layout: rows are drawn
    in fixed chunks of the global index range and each shard keeps its own."""
    out = torch.empty(len(global_index), dim)
    chunk = global_index // INIT_CHUNK
    for c in torch.unique(chunk).tolist():
        g = torch.Generator().manual_seed(seed * 7919 + c)
        block = torch.randn(INIT_CHUNK, dim, generator=g)
        sel = chunk == c
        out[sel] = block[global_index[sel] - c * INIT_CHUNK]
    return F.normalize(out, dim=1)


class MemoryBank(nn.Module):
    global_rows: torch.Tensor  # buffers, declared for type checkers
    rows: torch.Tensor

    def __init__(self, size: int, dim: int, momentum: float = 0.5, shard: Shard = Shard(), seed: int = 0):
        super().__init__()
        _count("MemoryBank size", size)
        _count("MemoryBank dim", dim)
        if not isinstance(momentum, (int, float)) or not 0.0 < momentum <= 1.0:
            raise BankError(f"bank momentum w must be in (0, 1], got {momentum!r}")
        self.size, self.dim, self.w, self.shard = size, dim, momentum, shard
        self.register_buffer("global_rows", shard.rows_of(size), persistent=False)
        self.register_buffer("rows", random_unit_rows(self.global_rows, dim, seed), persistent=False)

    def __len__(self) -> int:
        return self.size

    def check(self, index: torch.Tensor, v: torch.Tensor | None = None) -> None:
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.size):
            bad = int(index.max()) if int(index.max()) >= self.size else int(index.min())
            raise BankIndexError(
                f"sample index {bad} is outside the memory bank (0..{self.size - 1}); "
                "set method.bank_size to the number of training samples"
            )
        if v is not None and v.shape[-1] != self.dim:
            raise BankError(f"embedding dimension {v.shape[-1]} != bank dimension {self.dim}")

    def owned(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask of the entries of ``index`` this shard owns, their local slots)."""
        mine = index % self.shard.world == self.shard.rank
        return mine, index[mine] // self.shard.world

    @torch.no_grad()
    def update(self, index: torch.Tensor, v: torch.Tensor) -> None:
        """v^_i <- normalize((1 - w) v^_i + w v_i) (InterCLR eq. 1) for the global batch ``index``
        (the same on every worker). A sample present several times in one batch is updated once,
        with the mean of its embeddings."""
        self.check(index, v)
        uniq, inv = torch.unique(index, return_inverse=True)
        summed = torch.zeros(len(uniq), v.shape[1], device=v.device, dtype=v.dtype).index_add_(0, inv, v)
        counts = torch.bincount(inv, minlength=len(uniq)).to(v.dtype)
        mean = (summed / counts[:, None]).to(self.rows.dtype)
        mine, slots = self.owned(uniq)
        self.rows[slots] = F.normalize((1 - self.w) * self.rows[slots] + self.w * mean[mine], dim=1)

    @torch.no_grad()
    def write(self, index: torch.Tensor, v: torch.Tensor) -> None:
        """Set rows (no momentum): every worker passes its own, possibly empty, share; the shares are
        all-gathered and each shard keeps the rows it owns. A collective when ``world_size`` > 1,
        whatever the layout (a replicated bank needs every worker's rows too)."""
        self.check(index, v)
        index, v = dist.all_gather_nograd(index), dist.all_gather_nograd(v.to(self.rows.dtype))
        mine, slots = self.owned(index)
        self.rows[slots] = F.normalize(v[mine], dim=1)

    @torch.no_grad()
    def fetch(self, index: torch.Tensor) -> torch.Tensor:
        """Rows of global ``index``. Sharded: a collective, every worker passes the same ``index``."""
        self.check(index)
        if not self.shard.collective:
            return self.rows[index]
        out = torch.zeros(len(index), self.dim, device=self.rows.device, dtype=self.rows.dtype)
        mine, slots = self.owned(index)
        out[mine] = self.rows[slots]
        return dist.all_reduce_sum(out)

    @torch.no_grad()
    def full(self) -> torch.Tensor:
        """The whole bank [N, D] on every worker (a collective when sharded)."""
        return gather_sharded(self.rows, self.size, self.shard)

    @torch.no_grad()
    def load_full(self, rows: torch.Tensor) -> None:
        if tuple(rows.shape) != (self.size, self.dim):
            raise BankError(
                f"bank of shape {tuple(rows.shape)} does not fit method.bank_size x dim = {self.size} x {self.dim}"
            )
        self.rows.copy_(rows[self.global_rows.to(rows.device)].to(self.rows))

    def nbytes(self) -> int:
        return self.rows.numel() * self.rows.element_size()


def gather_sharded(local: torch.Tensor, n: int, shard: Shard) -> torch.Tensor:
    """Interleave every shard's rows back into global order."""
    if not shard.collective:
        return local.clone()
    parts = dist.all_gather_nograd(local)
    out = torch.empty((n,) + tuple(local.shape[1:]), dtype=local.dtype, device=local.device)
    start = 0
    for r in range(shard.world):
        m = len(range(r, n, shard.world))
        out[r :: shard.world] = parts[start : start + m]
        start += m
    return out
