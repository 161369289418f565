"""Sampling from the whole bank for InterCLR, whichever worker holds the rows.

Anchors are the batch (replicated layout: this worker's; sharded: the all-gathered global batch,
so every shard can score its rows against every anchor). Each selection is a boolean mask over
this worker's rows with exactly K chosen per anchor across all workers (raycl.bank.select).

Negatives come from other clusters than the anchor's:
    hard       the K nearest rows
    semi_hard  K at random from the nearest 10% (the default)
    random     K at random
    semi_easy  K at random from the farthest 10%
"The nearest 10%" is the ceil(10%) of the anchor's candidates with the largest similarity.
Intra-image negatives are K random rows other than the anchor; the inter-image positive is a
random other row of the anchor's cluster.

The loss never needs the chosen rows themselves, only log sum_k exp(q.k / tau) per anchor and its
gradient, which each shard computes over its own rows (``bank_logsumexp``): per step the workers
exchange O(anchors x D) numbers, not O(anchors x K x D).
"""

from __future__ import annotations

import torch

from raycl import collectives as dist
from raycl.bank.kmeans import OnlineKMeans
from raycl.bank.memory import MemoryBank
from raycl.bank.select import count, float_u32, hash_u32, kth_largest, make_keys, top_k_mask
from raycl.errors import BankError

STRATEGIES = ("hard", "semi_hard", "random", "semi_easy")
INTRA, INTER, POSITIVE = 1, 2, 3  # hash streams


def _random_among(
    bank: MemoryBank, candidates: torch.Tensor, anchor_index: torch.Tensor, k, seed: int, step: int, stream: int
) -> torch.Tensor:
    u = hash_u32(seed, stream, step, anchor_index, bank.global_rows)
    return top_k_mask(make_keys(u, bank.global_rows, candidates), k, bank.shard.collective)


def _scatter(shape, cols: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.bool, device=cols.device).scatter_(1, cols, chosen)


def intra_negatives(bank: MemoryBank, anchor_index: torch.Tensor, k: int, seed: int, step: int) -> torch.Tensor:
    """K rows drawn uniformly with replacement from the bank minus the anchor's own row (NPID and
    InterCLR draw intra-image negatives this way). Returns a count matrix [A, n_local]: how often
    each of this worker's rows was drawn for each anchor. Draws depend on (seed, step, anchor)
    only, so every layout draws the same rows."""
    if bank.size < 2:
        raise BankError("intra negatives need a bank of at least 2 rows")
    u = hash_u32(seed, INTRA, step, anchor_index, torch.arange(k, device=anchor_index.device))
    r = u % (bank.size - 1)
    draws = r + (r >= anchor_index.view(-1, 1)).long()  # skip the anchor itself
    mine = draws % bank.shard.world == bank.shard.rank
    rows = torch.arange(len(anchor_index), device=draws.device).view(-1, 1).expand_as(draws)
    counts = torch.zeros(len(anchor_index), len(bank.global_rows), device=draws.device)
    return counts.index_put_(
        (rows[mine], draws[mine] // bank.shard.world), torch.ones_like(draws[mine], dtype=counts.dtype), accumulate=True
    )


def inter_negatives(
    bank: MemoryBank,
    kmeans: OnlineKMeans,
    anchors: torch.Tensor,
    anchor_index: torch.Tensor,
    anchor_labels: torch.Tensor,
    k: int,
    strategy: str,
    seed: int,
    step: int,
) -> torch.Tensor:
    """Boolean [A, n_local]: the K negatives of each anchor that this worker's rows hold."""
    if strategy not in STRATEGIES:
        raise BankError(f"unknown negative sampling strategy {strategy!r}; available: {', '.join(STRATEGIES)}")
    collective = bank.shard.collective
    other = kmeans.labels.view(1, -1) != anchor_labels.view(-1, 1)  # [A, n_local]
    n_other = count(other, collective)
    if len(n_other) and k > int(n_other.min()):
        raise BankError(
            f"K={k} negatives requested but an anchor has only {int(n_other.min())} rows "
            "outside its cluster; lower method.num_negatives or use fewer clusters"
        )
    if strategy == "random":
        return _random_among(bank, other, anchor_index, k, seed, step, INTER)
    sim = anchors.to(bank.rows.dtype) @ bank.rows.t()
    sim = (sim if strategy != "semi_easy" else -sim).masked_fill(~other, float("-inf"))
    # Only each shard's local top candidates can be among the global top: keys for those alone.
    m = k if strategy == "hard" else torch.clamp((n_other * 0.1).ceil().long(), min=k)
    vals, cols = sim.topk(min(int(m.max()) if torch.is_tensor(m) else m, sim.shape[1]), dim=1)
    gcols = bank.global_rows[cols]
    keys = make_keys(float_u32(vals), gcols, torch.isfinite(vals))
    if strategy == "hard":
        return _scatter(sim.shape, cols, top_k_mask(keys, k, collective))
    near = keys >= kth_largest(keys, m, collective).view(-1, 1)  # the nearest (farthest) 10%
    u = hash_u32(seed, INTER, step, anchor_index, gcols)
    return _scatter(sim.shape, cols, top_k_mask(make_keys(u, gcols, near), k, collective))


def inter_positives(
    bank: MemoryBank,
    kmeans: OnlineKMeans,
    anchor_index: torch.Tensor,
    anchor_labels: torch.Tensor,
    seed: int,
    step: int,
) -> torch.Tensor:
    """Global index of a random row of each anchor's cluster other than itself (itself when alone)."""
    same = kmeans.labels.view(1, -1) == anchor_labels.view(-1, 1)
    not_self = bank.global_rows.view(1, -1) != anchor_index.view(-1, 1)
    alone = count(same & not_self, bank.shard.collective) == 0
    ai, ci = (same & (not_self | alone.view(-1, 1))).nonzero(as_tuple=True)  # ~A x N / clusters pairs
    rows = bank.global_rows[ci]
    keys = make_keys(
        hash_u32(seed, POSITIVE, step, anchor_index[ai], rows.view(-1, 1)),
        rows.view(-1, 1),
        torch.ones(len(rows), 1, dtype=torch.bool, device=rows.device),
    ).squeeze(1)
    best = torch.full((len(anchor_index),), -1, dtype=torch.int64, device=rows.device)
    best = best.scatter_reduce(0, ai, keys, "amax")
    if bank.shard.collective:
        best = dist.all_gather_nograd(best.view(1, -1)).amax(0)
    return (1 << 31) - 1 - (best & ((1 << 31) - 1))


class _BankExpSum(torch.autograd.Function):
    """S_a = sum_{selected k} exp((q_a.k - 1) / tau) over this worker's rows, summed over shards.
    Backward: dS_a/dq_a = sum_k exp(...) k / tau, also per shard then summed."""

    @staticmethod
    def forward(ctx, q_local, rows, mask, tau, collective):
        q = dist.all_gather_nograd(q_local) if collective else q_local
        e = torch.exp((q.to(rows.dtype) @ rows.t() - 1) / tau) * mask
        s = e.sum(1)
        if collective:
            dist.all_reduce_sum(s)
            r, b = dist.rank(), len(q_local)
            s = s[r * b : (r + 1) * b]
        ctx.save_for_backward(e, rows.clone())  # the bank is updated in place before backward runs
        ctx.tau, ctx.collective, ctx.b = tau, collective, len(q_local)
        return s.to(q_local.dtype)

    @staticmethod
    def backward(ctx, gs):
        e, rows = ctx.saved_tensors
        if ctx.collective:
            gs = dist.all_gather_nograd(gs.contiguous())
        g = ((gs.to(e.dtype).unsqueeze(1) * e) @ rows) / ctx.tau
        if ctx.collective:
            dist.all_reduce_sum(g)
            r = dist.rank()
            g = g[r * ctx.b : (r + 1) * ctx.b]
        return g, None, None, None, None


def bank_logsumexp(q: torch.Tensor, bank: MemoryBank, mask: torch.Tensor, tau: float) -> torch.Tensor:
    """log sum_{selected k} exp(q.k / tau) for this worker's anchors ``q`` [b, D], differentiable in q.
    ``mask`` [A, n_local] rows: A = b (replicated) or the global batch in rank order (sharded)."""
    s = _BankExpSum.apply(q, bank.rows, mask.to(bank.rows.dtype), tau, bank.shard.collective)
    return torch.log(s) + 1.0 / tau


def sample_negatives(anchors, rows, labels, anchor_labels, k, strategy, seed=0, step=0, anchor_index=None):
    """Single-process convenience: bank row indices [B, k] of ``inter_negatives`` on a replicated bank."""
    bank = MemoryBank(len(rows), rows.shape[1])
    bank.rows = rows
    km = OnlineKMeans(1, bank)
    km.labels = labels
    idx = torch.arange(len(anchors)) if anchor_index is None else anchor_index
    mask = inter_negatives(bank, km, anchors, idx, anchor_labels, k, strategy, seed, step)
    return mask.nonzero()[:, 1].view(len(anchors), k)


__all__ = ["STRATEGIES", "bank_logsumexp", "inter_negatives", "inter_positives", "intra_negatives", "sample_negatives"]
