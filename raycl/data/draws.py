"""Random draws for augmentations: per sample of the global batch, the same on every worker."""

from __future__ import annotations

import torch


class SampleStream:
    """Randomness for a global (micro-)batch of ``total`` samples of which this worker holds rows
    ``offset:offset + n``. Every draw is made for all ``total`` samples, from a generator seeded the
    same on every worker, and sliced: a sample's augmentation does not depend on how many workers
    share the batch (what lets a run resumed on another worker count train exactly as before)."""

    def __init__(self, g: torch.Generator, total: int, offset: int):
        self.g, self.total, self.offset = g, total, offset


def draw_uniform(g, n: int, device) -> torch.Tensor:
    """n uniform draws in [0, 1) from a ``torch.Generator`` or this worker's slice of a ``SampleStream``."""
    if isinstance(g, SampleStream):
        return torch.rand(g.total, generator=g.g, device=device)[g.offset : g.offset + n]
    return torch.rand(n, generator=g, device=device)


def draw_int(g, high: int, n: int, device) -> torch.Tensor:
    if isinstance(g, SampleStream):
        return torch.randint(high, (g.total,), generator=g.g, device=device)[g.offset : g.offset + n]
    return torch.randint(high, (n,), generator=g, device=device)
