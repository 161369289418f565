"""How many directions the features spread over: a collapse check that needs no labels."""

from __future__ import annotations

import torch

# Rows (or columns) of the features turned to float64 at a time: the Gram matrix accumulates chunk by chunk.
CHUNK = 4096


def effective_rank(features: torch.Tensor) -> float:
    """exp of the Shannon entropy of the singular values normalised to sum 1 (Roy & Vetterli 2007,
    eq. 3-5; RankMe, Garrido et al. 2023, eq. 1) of the mean-centred features: 1 for features spread
    along one direction, D for D equal ones. Centred, unlike RankMe: after a ReLU every feature is
    positive, and the shared offset would otherwise count as the main direction (a random-init encoder
    on Fashion-MNIST: 6.6 of 128 uncentred)."""
    values = torch.linalg.eigvalsh(centred_gram(features)).clamp(min=0).sqrt()  # the singular values
    p = values / values.sum()
    p = p[p > 0]  # 0 log 0 = 0
    return float(torch.exp(-(p * p.log()).sum()))


def centred_gram(features: torch.Tensor) -> torch.Tensor:
    """X^T X or X X^T of the mean-centred features X, whichever is smaller, in float64: min(rows, dims)^2
    doubles instead of a float64 copy of the features and its SVD (raw pixels of 224-pixel images:
    150,528 dimensions a row)."""
    mean = features.mean(0, dtype=torch.float64)
    tall = features.shape[0] >= features.shape[1]
    side = min(features.shape)
    gram = torch.zeros(side, side, dtype=torch.float64)
    for start in range(0, max(features.shape), CHUNK):
        part = slice(start, start + CHUNK)
        if tall:  # rows at a time: X^T X = sum over row blocks
            block = features[part].double() - mean
            gram += block.T @ block
        else:  # columns at a time: X X^T = sum over column blocks
            block = features[:, part].double() - mean[part]
            gram += block @ block.T
    return gram
