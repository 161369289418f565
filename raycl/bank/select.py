"""Exact top-k selection over rows spread across workers, with keys that make every choice
independent of how the rows are laid out.

Every candidate (anchor a, global row j) gets a unique int64 key: 32 bits of score (a similarity
mapped to an order-preserving integer, or a counter-based hash for random draws) above 31 bits of
the row index (lower index wins ties). Choosing "the k largest keys" is then a function of the
global data only, so one process, 2 or 3 workers, sharded or replicated, pick the same rows.

Across workers the k-th largest key per anchor is found by a radix select on the key: 8 rounds,
each all-reducing a 256-bin histogram per anchor, so selecting K = 16,384 of 1.28M rows never
moves candidate rows or scores between workers.
"""

from __future__ import annotations

import torch

from raycl import collectives as dist

INVALID = -1
_LOW = (1 << 31) - 1
_M32 = (1 << 32) - 1


def _shr(x: torch.Tensor, n: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> n) & ((1 << (64 - n)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 (multiplication wraps modulo 2^64)."""
    x = x ^ _shr(x, 30)
    x = x * -4658895280553007687
    x = x ^ _shr(x, 27)
    x = x * -7723592293110705685
    return x ^ _shr(x, 31)


def hash_u32(seed: int, stream: int, step: int, anchors: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """[A, n] uniform 32-bit integers, a pure function of (seed, stream, step, anchor id, row id);
    ``rows`` is [n] (the same rows for every anchor) or [A, n] (each anchor's own)."""
    base = mix64(
        torch.tensor(((seed * 1_000_003 + stream) * 1_000_033 + step), dtype=torch.int64, device=anchors.device)
    )
    a = mix64(anchors.to(torch.int64) * -7046029254386353131 + base)
    rows = rows.to(torch.int64)
    return _shr(mix64(a.view(-1, 1) + (rows.view(1, -1) if rows.dim() == 1 else rows) * -4658895280553007687), 32)


def float_u32(x: torch.Tensor) -> torch.Tensor:
    """float32 -> int64 in [0, 2^32), order-preserving (IEEE bits, negatives flipped)."""
    i = x.float().contiguous().view(torch.int32).to(torch.int64)
    return torch.where(i < 0, (~i) & _M32, i | (1 << 31))


def make_keys(u32: torch.Tensor, rows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Unique keys: score bits above (2^31 - 1 - row); INVALID where ``valid`` is False.
    ``rows``: global row ids, [n] shared by all anchors or [A, n]."""
    rows = rows.to(torch.int64)
    keys = (u32 << 31) | (_LOW - (rows.view(1, -1) if rows.dim() == 1 else rows))
    return torch.where(valid, keys, torch.full_like(keys, INVALID))


def kth_largest(keys: torch.Tensor, k: torch.Tensor | int, collective: bool) -> torch.Tensor:
    """Per row of ``keys`` [A, n] (INVALID = not a candidate), the k-th largest key over all workers'
    columns (``collective``) or this worker's. ``k`` may differ per anchor; every anchor must have
    at least k candidates in all."""
    a, n = keys.shape
    k = torch.as_tensor(k, device=keys.device, dtype=torch.int64).expand(a)
    kmax = int(k.max()) if a else 0
    top = keys.topk(min(max(kmax, 1), n), dim=1).values if n else keys.new_full((a, 1), INVALID)
    if not collective:
        return top.gather(1, (k - 1).clamp(max=top.shape[1] - 1).view(-1, 1)).squeeze(1)
    # Radix select, 8 bits a round from the top: every shard histograms the next byte of its
    # candidates that share the prefix found so far; the summed histogram says which byte the
    # k-th largest key has. 8 all-reduces of [A, 256] counts; the k-th largest key of all shards
    # is among each shard's local top-k, so those lists are all a shard needs to look at.
    valid = top != INVALID
    prefix = torch.zeros(a, dtype=torch.int64, device=keys.device)
    need = k.clone()
    for shift in range(56, -1, -8):
        inpre = valid if shift == 56 else valid & ((top >> (shift + 8)) == prefix.view(-1, 1))
        digit = ((top >> shift) & 255) * inpre
        hist = torch.zeros(a, 256, dtype=torch.int32, device=keys.device).scatter_add_(1, digit, inpre.int())
        hist = dist.all_reduce_sum(hist)
        above = torch.cat([hist.flip(1).cumsum(1).flip(1), hist.new_zeros(a, 1)], dim=1)  # above[d] = #digits >= d
        d = (above[:, :256] >= need.view(-1, 1)).sum(1) - 1  # int32 counts: K <= 2^31
        need = need - above.gather(1, (d + 1).view(-1, 1)).squeeze(1)
        prefix = (prefix << 8) | d
    return prefix


def top_k_mask(keys: torch.Tensor, k: torch.Tensor | int, collective: bool) -> torch.Tensor:
    """Boolean [A, n]: the k largest keys of each anchor, over all workers' columns if collective."""
    return (keys >= kth_largest(keys, k, collective).view(-1, 1)) & (keys != INVALID)


def count(mask: torch.Tensor, collective: bool) -> torch.Tensor:
    c = mask.sum(1, dtype=torch.int64)
    return dist.all_reduce_sum(c) if collective else c
