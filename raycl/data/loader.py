"""Splits each epoch across workers so every sample is seen once per epoch and every worker runs
the same number of steps (a worker with fewer steps would hang the others in a collective).

Order of an epoch (fixed by seed and epoch, so a resumed run replays it exactly): blocks in a random
order, rows in a random order inside each block; worker r takes the r-th contiguous slice of every
global batch's worth, then rows are shuffled again inside windows of ``shuffle_window`` rows.
When N is not a multiple of the global batch, the last batch is completed with the epoch's first
rows (as torch's DistributedSampler pads), unless ``drop_last``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from raycl.data.source import Source
from raycl.errors import DataError


@dataclass
class Batch:
    index: np.ndarray   # int64 [b]
    images: np.ndarray  # uint8 [b, C, H, W]
    labels: np.ndarray  # int64 [b]
    skipped: int = 0    # corrupt rows replaced in this batch


class EpochLoader:
    def __init__(self, source: Source, global_batch: int, rank: int = 0, world: int = 1, seed: int = 0,
                 drop_last: bool = False, shuffle_window: int = 65536):
        if global_batch % world:
            raise ValueError(f"global batch {global_batch} is not divisible by {world} workers")
        self.source, self.G, self.rank, self.world = source, global_batch, rank, world
        self.seed, self.drop_last, self.window = seed, drop_last, shuffle_window
        n = len(source)
        if n == 0:
            raise DataError("the dataset is empty")
        self.steps_per_epoch = n // self.G if drop_last else math.ceil(n / self.G)
        if self.steps_per_epoch == 0:
            raise DataError(f"data.batch_size={self.G} is larger than the dataset ({n} samples) "
                            "with data.drop_last: true")
        self._starts = np.cumsum([0] + list(source.block_sizes[:-1]))

    def epoch_rows(self, epoch: int) -> np.ndarray:
        """Global row positions (into the concatenated blocks) this worker reads, in order."""
        rng = np.random.default_rng([self.seed, epoch])
        order = np.concatenate([self._starts[b] + rng.permutation(self.source.block_sizes[b])
                                for b in rng.permutation(len(self.source.block_sizes))])
        need = self.steps_per_epoch * self.G
        order = np.resize(order, need) if need > len(order) else order[:need]
        per = self.G // self.world
        mine = order.reshape(self.steps_per_epoch, self.world, per)[:, self.rank].reshape(-1)
        local = np.random.default_rng([self.seed, epoch, 1 + self.rank])
        for s in range(0, len(mine), self.window):
            mine[s:s + self.window] = local.permutation(mine[s:s + self.window])
        return mine

    def batches(self, epoch: int, start_step: int = 0):
        rows = self.epoch_rows(epoch)
        per = self.G // self.world
        rng = np.random.default_rng([self.seed, epoch, 1000 + self.rank])
        block_of = np.searchsorted(self._starts, rows, side="right") - 1
        for step in range(start_step, self.steps_per_epoch):
            sl = slice(step * per, (step + 1) * per)
            yield self._gather(rows[sl], block_of[sl], rng)

    def _gather(self, rows: np.ndarray, blocks: np.ndarray, rng) -> Batch:
        b = len(rows)
        first = self.source.read_block(int(blocks[0]))
        images = np.empty((b,) + first.images.shape[1:], dtype=np.uint8)
        index = np.empty(b, dtype=np.int64)
        labels = np.empty(b, dtype=np.int64)
        valid = np.empty(b, dtype=bool)
        for blk in np.unique(blocks):
            sel = np.flatnonzero(blocks == blk)
            data = self.source.read_block(int(blk))
            off = rows[sel] - self._starts[blk]
            images[sel], index[sel], labels[sel], valid[sel] = (
                data.images[off], data.index[off], data.labels[off], data.valid[off])
        bad = np.flatnonzero(~valid)
        if len(bad):
            good = np.flatnonzero(valid)
            if not len(good):
                raise DataError(f"every row of a batch is corrupt (indices {index[:8].tolist()}...)")
            # Keep the batch shape equal on every worker: refill skipped slots with valid rows.
            fill = rng.choice(good, size=len(bad))
            images[bad], index[bad], labels[bad] = images[fill], index[fill], labels[fill]
        return Batch(index, images, labels, len(bad))
