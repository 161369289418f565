"""How many directions the features spread over: a collapse check that needs no labels."""

from __future__ import annotations

import torch


def effective_rank(features: torch.Tensor) -> float:
    """exp of the Shannon entropy of the singular values normalised to sum 1 (Roy & Vetterli 2007,
    eq. 3-5; RankMe, Garrido et al. 2023, eq. 1) of the mean-centred features: 1 for features spread
    along one direction, D for D equal ones. Centred, unlike RankMe: after a ReLU every feature is
    positive, and the shared offset would otherwise count as the main direction (a random-init encoder
    on Fashion-MNIST: 6.6 of 128 uncentred)."""
    values = torch.linalg.svdvals((features - features.mean(0)).double())
    p = values / values.sum()
    p = p[p > 0]  # 0 log 0 = 0
    return float(torch.exp(-(p * p.log()).sum()))
