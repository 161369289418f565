"""Projection and prediction heads."""

from __future__ import annotations

import torch.nn as nn


def mlp(in_dim: int, hidden: int, out: int, layers: int = 2, bn_last: bool = False) -> nn.Sequential:
    """Linear-BN-ReLU blocks then a Linear (SimCLR's g(.) with ``layers=2``); ``bn_last`` adds a BN
    on the output, as SimCLIC's projector and SimSiam's have."""
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
        d = hidden
    mods.append(nn.Linear(d, out, bias=not bn_last))
    if bn_last:
        mods.append(nn.BatchNorm1d(out))
    return nn.Sequential(*mods)
