"""A class-balanced, seeded subset of a run's labeled training rows (fine-tuning on 1% or 10% of
the labels, as SimCLR's ImageNet subsets are drawn)."""

from __future__ import annotations

import numpy as np

from raycl.data import build_sources
from raycl.errors import ConfigError


def label_subset(cfg, fraction: float, seed: int) -> np.ndarray:
    """Row positions of a class-balanced seeded subset of the training rows: ``fraction`` of each
    class's labeled rows (at least one), as SimCLR's 1% / 10% ImageNet subsets are drawn."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"--label-fraction: expected a fraction in (0, 1], got {fraction}")
    train, _ = build_sources(cfg.model_copy(update={"data": cfg.data.model_copy(update={"rows": None})}))
    labels = np.concatenate([train.labels_of(b) for b in range(len(train.block_sizes))])
    classes = np.unique(labels[labels >= 0])
    wanted = round(fraction * int((labels >= 0).sum()))
    if wanted < len(classes):
        raise ConfigError(
            f"--label-fraction: {fraction} of {int((labels >= 0).sum())} labeled rows is {wanted} rows, fewer than "
            f"the {len(classes)} classes; raise it to at least {len(classes) / max(1, int((labels >= 0).sum())):.2g}"
        )
    rng = np.random.default_rng([seed, 0xF17E])
    picks = []
    for c in classes:
        rows = np.flatnonzero(labels == c)
        picks.append(rng.choice(rows, max(1, round(fraction * len(rows))), replace=False))
    return np.sort(np.concatenate(picks))
