"""Data sources, the per-worker epoch loader and augmentations (plain PyTorch/NumPy, no Ray)."""
from __future__ import annotations

import numpy as np

from raycl.data.loader import Batch, EpochLoader
from raycl.data.source import ArraySource, Block, Source


class RowSubset(Source):
    """The rows of one in-memory block at given positions (held-out split of a single source)."""

    def __init__(self, source: Source, rows: np.ndarray):
        full = source.read_all()
        self._block = Block(full.index[rows], full.images[rows], full.labels[rows], full.valid[rows], full.where)
        self.block_sizes = [len(rows)]

    def read_block(self, i: int) -> Block:
        return self._block


def build_sources(cfg) -> tuple[Source, Source]:
    """(train, held-out) sources for a config. Without ``data.eval_path`` a Parquet run holds out
    ``data.eval_fraction`` of its rows for the monitor's queries (those rows are still trained on)."""
    d = cfg.data
    if d.dataset == "demo":
        from raycl.data.demo import demo_sources

        return demo_sources(d.eval_fraction, d.num_samples)
    from raycl.data.parquet import ParquetSource

    train = ParquetSource(d.path, d.image_size, d.channels, d.on_corrupt)
    if d.eval_path:
        return train, ParquetSource(d.eval_path, d.image_size, d.channels, d.on_corrupt)
    n = len(train)
    held = np.random.default_rng(cfg.run.seed).permutation(n)[: max(1, int(n * d.eval_fraction))]
    return train, RowSubset(train, np.sort(held))


__all__ = ["ArraySource", "Batch", "Block", "EpochLoader", "Source", "build_sources"]
