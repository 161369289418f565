"""A worker's batches for an epoch: the plan (``raycl.data.plan``) says which rows in which order;
row groups' bytes are read ahead in a background thread and the rows of each batch decoded in a pool
of threads, ``prefetch`` batches ahead of the training step.

Memory held by a worker: the encoded row groups of its current mixing window (``mix_blocks``, at
most twice that while one window hands over to the next) and at most ``prefetch + 2`` decoded
batches; never the dataset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from raycl.data.plan import dealt_blocks_plan, global_batches_plan, resumed_rows
from raycl.data.prefetch import Prefetcher
from raycl.data.source import Source
from raycl.errors import DataError
from raycl.world import WorldPlan


@dataclass
class Batch:
    index: np.ndarray  # int64 [b]
    images: object  # uint8 [b, C, H, W] (ndarray, or a pinned tensor); None when ``encoded``
    labels: np.ndarray  # int64 [b]
    skipped: int = 0  # corrupt rows replaced in this batch
    encoded: list | None = None  # data.decode: gpu -- the rows' image bytes, decoded on the device


class EpochLoader:
    def __init__(
        self,
        source: Source,
        global_batch: int,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
        drop_last: bool = False,
        shuffle_window: int = 65536,
        mix_blocks: int = 16,
        prefetch: int = 4,
        decode_workers: int = 1,
        encoded: bool = False,
        pin_memory: bool = False,
        grad_accum: int = 1,
    ):
        WorldPlan(global_batch, world, grad_accum)  # refuses a batch that does not divide
        self.source, self.G, self.rank, self.world = source, global_batch, rank, world
        self.seed, self.drop_last, self.window, self.mix_blocks = seed, drop_last, shuffle_window, mix_blocks
        self.prefetch, self.decode_workers, self.encoded, self.pin = prefetch, decode_workers, encoded, pin_memory
        self.grad_accum = grad_accum
        n = len(source)
        if n == 0:
            raise DataError("the dataset is empty")
        self.steps_per_epoch = n // self.G if drop_last else math.ceil(n / self.G)
        if self.steps_per_epoch == 0:
            raise DataError(
                f"data.batch_size={self.G} is larger than the dataset ({n} samples) with data.drop_last: true"
            )
        self._starts = source.starts
        self.waited_s = 0.0  # time the last epoch's consumer waited for data

    def epoch_rows(self, epoch: int) -> np.ndarray:
        """Global row positions (into the concatenated blocks) this worker reads, in order."""
        args = (
            self.source.block_sizes,
            self._starts,
            self.steps_per_epoch,
            self.G,
            self.rank,
            self.world,
            self.seed,
            epoch,
        )
        if self.source.random_access:
            return global_batches_plan(*args, self.window, self.grad_accum)
        return dealt_blocks_plan(*args, self.mix_blocks)

    def rows_from(self, epoch: int, start_step: int = 0, segments: list | None = None) -> np.ndarray:
        """This worker's rows for steps ``start_step``.. of ``epoch``. ``segments`` ([(workers, first
        step), ...], ending with this run's) say which worker counts ran the epoch's earlier steps: a
        block-dealt plan depends on the count, so the rows no earlier segment reached are re-dealt
        (``resumed_rows``); a global-batches plan gives every global batch whatever the count.
        Re-dealing rebuilds every earlier worker's epoch plan (O(workers x rows)): once per resume,
        never per step."""
        per = self.G // self.world
        if self.source.random_access or not segments or all(w == self.world for w, _ in segments):
            return self.epoch_rows(epoch)[start_step * per :]
        if list(segments[-1]) != [self.world, start_step]:
            raise ValueError(f"the last segment {segments[-1]} is not this run's ({self.world}, {start_step})")
        knob = self.mix_blocks

        def plan(r, w):
            return dealt_blocks_plan(
                self.source.block_sizes, self._starts, self.steps_per_epoch, self.G, r, w, self.seed, epoch, knob
            )

        return resumed_rows(plan, [tuple(s) for s in segments], self.steps_per_epoch, self.G, self.rank)

    def batches(self, epoch: int, start_step: int = 0, segments: list | None = None):
        rows = self.rows_from(epoch, start_step, segments)
        per = self.G // self.world
        block_of = np.searchsorted(self._starts, rows, side="right") - 1
        last_use = {}
        for step in range(start_step, self.steps_per_epoch):
            k = step - start_step
            for b in np.unique(block_of[k * per : (k + 1) * per]).tolist():
                last_use[b] = step
        held: dict = {}

        def prepare(step):  # producer thread, in step order: read the bytes this batch needs
            k = step - start_step
            sl = slice(k * per, (k + 1) * per)
            raws = {}
            for b in np.unique(block_of[sl]).tolist():
                if b not in held:
                    held[b] = self.source.read_raw(b)
                raws[b] = held[b]
            for b in [b for b in held if last_use[b] <= step]:
                del held[b]  # the job still holds its reference until it is done
            return epoch, step, rows[sl], block_of[sl], raws

        pf = Prefetcher(
            range(start_step, self.steps_per_epoch), prepare, self._gather, self.prefetch, self.decode_workers
        )
        try:
            yield from pf
        finally:
            self.waited_s = pf.waited_s

    def _gather(self, job) -> Batch:
        epoch, step, rows, blocks, raws = job
        b = len(rows)
        index, labels = np.empty(b, dtype=np.int64), np.empty(b, dtype=np.int64)
        valid = np.ones(b, dtype=bool)
        images: Any = None  # uint8 [b, C, H, W]; pinned as a tensor on GPU workers
        encoded: list | None = None
        for blk, raw in raws.items():
            sel = np.flatnonzero(blocks == blk)
            part = raw.take(rows[sel] - self._starts[blk])
            index[sel], labels[sel] = part.index, part.labels
            if self.encoded and isinstance(part.payload, list):
                encoded = encoded if encoded is not None else [None] * b
                for j, data in zip(sel, part.payload):
                    encoded[j] = data
                continue
            imgs, ok = self.source.decode(part)
            if images is None:
                images = np.empty((b,) + imgs.shape[1:], dtype=np.uint8)
            images[sel], valid[sel] = imgs, ok
        bad = np.flatnonzero(~valid)
        if len(bad):
            good = np.flatnonzero(valid)
            if not len(good):
                raise DataError(f"every row of a batch is corrupt (indices {index[:8].tolist()}...)")
            # Keep the batch shape equal on every worker: refill skipped slots with valid rows.
            fill = np.random.default_rng([self.seed, epoch, step, 1000 + self.rank]).choice(good, size=len(bad))
            images[bad], index[bad], labels[bad] = images[fill], index[fill], labels[fill]
        if self.pin and images is not None:
            import torch  # the loader is NumPy; torch only for pinned GPU batches

            images = torch.from_numpy(images).pin_memory()
        return Batch(index, images, labels, len(bad), encoded)
