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

from raycl import dist
from raycl.bank.kmeans import OnlineKMeans
from raycl.bank.memory import MemoryBank
from raycl.bank.select import count, float_u32, hash_u32, kth_largest, make_keys, top_k_mask

STRATEGIES = ("hard", "semi_hard", "random", "semi_easy")
INTRA, INTER, POSITIVE = 1, 2, 3   # hash streams


def _random_among(bank: MemoryBank, candidates: torch.Tensor, anchor_index: torch.Tensor, k, seed: int,
                  step: int, stream: int) -> torch.Tensor:
    u = hash_u32(seed, stream, step, anchor_index, bank.global_rows)
    return top_k_mask(make_keys(u, bank.global_rows, candidates), k, bank.shard.collective)


def intra_negatives(bank: MemoryBank, anchor_index: torch.Tensor, k: int, seed: int, step: int) -> torch.Tensor:
    """K rows at random from the whole bank, never the anchor's own row."""
    other = bank.global_rows.view(1, -1) != anchor_index.view(-1, 1)
    if k > bank.size - 1:
        raise ValueError(f"K={k} intra negatives requested but the bank has {bank.size - 1} other rows")
    return _random_among(bank, other, anchor_index, k, seed, step, INTRA)


def inter_negatives(bank: MemoryBank, kmeans: OnlineKMeans, anchors: torch.Tensor, anchor_index: torch.Tensor,
                    anchor_labels: torch.Tensor, k: int, strategy: str, seed: int, step: int) -> torch.Tensor:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown negative sampling strategy {strategy!r}; available: {', '.join(STRATEGIES)}")
    collective = bank.shard.collective
    other = kmeans.labels.view(1, -1) != anchor_labels.view(-1, 1)          # [A, n_local]
    n_other = count(other, collective)
    if len(n_other) and k > int(n_other.min()):
        raise ValueError(f"K={k} negatives requested but an anchor has only {int(n_other.min())} rows "
                         "outside its cluster; lower method.num_negatives or use fewer clusters")
    if strategy == "random":
        return _random_among(bank, other, anchor_index, k, seed, step, INTER)
    sim = anchors @ bank.rows.t()
    sim_keys = make_keys(float_u32(sim if strategy != "semi_easy" else -sim), bank.global_rows, other)
    if strategy == "hard":
        return top_k_mask(sim_keys, k, collective)
    m = torch.clamp((n_other * 0.1).ceil().long(), min=k)
    near = sim_keys >= kth_largest(sim_keys, m, collective).view(-1, 1)
    return _random_among(bank, near & other, anchor_index, k, seed, step, INTER)


def inter_positives(bank: MemoryBank, kmeans: OnlineKMeans, anchor_index: torch.Tensor, anchor_labels: torch.Tensor,
                    seed: int, step: int) -> torch.Tensor:
    """Global index of a random row of each anchor's cluster other than itself (itself when alone)."""
    same = kmeans.labels.view(1, -1) == anchor_labels.view(-1, 1)
    not_self = bank.global_rows.view(1, -1) != anchor_index.view(-1, 1)
    alone = count(same & not_self, bank.shard.collective) == 0
    cand = same & (not_self | alone.view(-1, 1))
    mask = _random_among(bank, cand, anchor_index, 1, seed, step, POSITIVE)
    local = torch.where(mask.any(1), bank.global_rows[mask.float().argmax(1)], torch.zeros_like(anchor_index))
    return dist.all_reduce_sum(local) if bank.shard.collective else local


def selected_global(bank: MemoryBank, mask: torch.Tensor) -> list[torch.Tensor]:
    """Per anchor, the global indices this worker's rows contribute (for tests and inspection)."""
    return [bank.global_rows[row] for row in mask]


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
            s = s[r * b:(r + 1) * b]
        ctx.save_for_backward(e, rows.clone())   # the bank is updated in place before backward runs
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
            g = g[r * ctx.b:(r + 1) * ctx.b]
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


__all__ = ["STRATEGIES", "bank_logsumexp", "inter_negatives", "inter_positives", "intra_negatives",
           "sample_negatives", "selected_global"]
