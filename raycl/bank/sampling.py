"""Positive and negative sampling from the bank for InterCLR's inter-image branch.

Strategies for K negatives per anchor, always from other clusters than the anchor's:
    hard       the K nearest rows
    semi_hard  K at random from the nearest 10% (the default)
    random     K at random
    semi_easy  K at random from the farthest 10%
"""
from __future__ import annotations

import math

import torch

STRATEGIES = ("hard", "semi_hard", "random", "semi_easy")


def _k_random_of(scores: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """Per row, k distinct column indices uniformly among those with finite score."""
    noise = torch.rand(scores.shape, generator=g, device="cpu").to(scores.device)
    return torch.where(torch.isfinite(scores), noise, torch.full_like(noise, -1.0)).topk(k, dim=1).indices


def sample_negatives(anchors: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor, anchor_labels: torch.Tensor,
                     k: int, strategy: str, g: torch.Generator) -> torch.Tensor:
    """Bank row indices [B, k]. ``anchors`` [B, d] and ``rows`` [N, d] are L2-normalised."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown negative sampling strategy {strategy!r}; available: {', '.join(STRATEGIES)}")
    other = labels.view(1, -1) != anchor_labels.view(-1, 1)          # [B, N]
    n_other = int(other.sum(1).min())
    if k > n_other:
        raise ValueError(f"K={k} negatives requested but an anchor has only {n_other} rows outside its cluster")
    sim = (anchors @ rows.t()).masked_fill(~other, float("-inf"))
    if strategy == "hard":
        return sim.topk(k, dim=1).indices
    if strategy == "random":
        return _k_random_of(sim, k, g)
    m = max(k, math.ceil(0.1 * n_other))
    if strategy == "semi_hard":
        near = sim.topk(m, dim=1).indices
    else:
        near = (-sim).masked_fill(~other, float("-inf")).topk(m, dim=1).indices
    pick = _k_random_of(torch.zeros(near.shape, device=near.device), k, g)
    return near.gather(1, pick)


def sample_positives(index: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random bank row of each anchor's cluster, other than the anchor itself when possible."""
    same = labels.view(1, -1) == labels[index].view(-1, 1)
    alone = same.sum(1) == 1
    same[torch.arange(len(index), device=index.device)[~alone], index[~alone]] = False
    scores = torch.where(same, torch.zeros_like(same, dtype=torch.float), torch.full_like(same, float("-inf"), dtype=torch.float))
    return _k_random_of(scores, 1, g).squeeze(1)
