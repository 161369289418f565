"""The raw-pixel floor: the strongest plain preprocessing of the pixels, per protocol.

A trained encoder is worth its cost only where it beats the pixels themselves. Which plain
preprocessing of the pixels is strongest depends on the data and the protocol: a cosine kNN is
changed by any shift of every pixel (on MNIST digits the stored values score 0.905, the model's
normalised input (x - 0.5) / 0.25 only 0.817), while a probe that standardises its features is not.
So the floor is measured under each of three preprocessings, with training statistics only (the
held-out rows never inform them), and the best is the floor, named in the result:

- ``stored``: the values as stored, in [0, 1];
- ``centred``: minus the training rows' per-pixel mean;
- ``standardised``: centred, then divided by the training rows' per-pixel standard deviation
  (pixels constant over the training rows stay 0).
"""

from __future__ import annotations

import torch

from raycl.data.views import MEAN, STD

PREPROCESSINGS = ("stored", "centred", "standardised")


class StoredPixels(torch.nn.Module):
    """A "backbone" that returns the model's input, flattened and mapped back to the stored values
    in [0, 1] (the evaluation view is normalised as (x - MEAN) / STD)."""

    out_dim = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) * STD + MEAN


def preprocess(train: torch.Tensor, test: torch.Tensor, how: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``train`` and ``test`` stored pixels under one of PREPROCESSINGS, with training statistics."""
    if how == "stored":
        return train, test
    mean = train.mean(0)
    if how == "centred":
        return train - mean, test - mean
    if how == "standardised":
        std = train.std(0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return (train - mean) / std, (test - mean) / std
    raise ValueError(f"unknown pixel preprocessing {how!r}; expected one of {', '.join(PREPROCESSINGS)}")


def best(scores: dict[str, dict]) -> dict:
    """The floor from each preprocessing's results (``{how: {metric: value}}``): for every top-1
    metric the highest value and ``<metric>_preprocessing`` naming the preprocessing that gave it
    (the first in PREPROCESSINGS on a tie); other figures (the effective rank) from the winner of
    ``knn_top1``."""
    metrics = {k for result in scores.values() for k, v in result.items() if k.endswith("_top1")}
    out: dict = {}
    for metric in sorted(metrics):
        ranked = [(v, how) for how in PREPROCESSINGS if (v := scores.get(how, {}).get(metric)) is not None]
        if not ranked:
            out[metric] = None
            continue
        value, how = max(ranked, key=lambda r: (r[0], -PREPROCESSINGS.index(r[1])))
        out[metric], out[f"{metric.removesuffix('_top1')}_preprocessing"] = value, how
    knn_winner = out.get("knn_preprocessing", PREPROCESSINGS[0])
    for key, value in scores.get(knn_winner, {}).items():
        out.setdefault(key, value)
    return out
