"""Where samples come from: a source is a list of blocks (a Parquet row group, an in-memory array)
that can be read one at a time, so a worker only ever holds the blocks its share of an epoch needs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Block:
    index: np.ndarray   # int64 [n], global sample ids
    images: np.ndarray  # uint8 [n, C, H, W]
    labels: np.ndarray  # int64 [n], -1 when unknown
    valid: np.ndarray   # bool [n], False for rows whose bytes did not decode (on_corrupt: skip)
    where: str = ""     # shard description for error messages


class Source:
    """A dataset as blocks. Subclasses set ``block_sizes`` and implement ``read_block``."""

    block_sizes: list[int]

    def __len__(self) -> int:
        return int(sum(self.block_sizes))

    def read_block(self, i: int) -> Block:  # pragma: no cover - interface
        raise NotImplementedError

    def has_labels(self) -> bool:
        """Whether any row has a label (>= 0); evaluation needs some."""
        return any(bool((self.read_block(i).labels >= 0).any()) for i in range(len(self.block_sizes)))

    def read_all(self) -> Block:
        blocks = [self.read_block(i) for i in range(len(self.block_sizes))]
        return Block(
            index=np.concatenate([b.index for b in blocks]),
            images=np.concatenate([b.images for b in blocks]),
            labels=np.concatenate([b.labels for b in blocks]),
            valid=np.concatenate([b.valid for b in blocks]),
            where="all",
        )


def rounds(source: Source, chunk: int, rank: int, world: int):
    """Stream a whole source once across ``world`` workers: the rows, in block order, are cut into
    chunks of ``chunk`` rows; in round k worker r gets chunk k * world + r (or nothing past the end).
    Every worker runs the same number of rounds, and a chunk holds the same rows whatever ``world``
    is, so a batched forward over it gives the same numbers on any worker count.
    Yields (index int64 [n], images uint8 [n, C, H, W]) with corrupt rows left out."""
    n = len(source)
    starts = np.cumsum([0] + list(source.block_sizes[:-1]))
    n_chunks = -(-n // chunk)
    for k in range(-(-n_chunks // world)):
        c = k * world + rank
        lo, hi = c * chunk, min((c + 1) * chunk, n)
        parts = []
        for b in range(len(source.block_sizes)):
            s, e = int(starts[b]), int(starts[b]) + source.block_sizes[b]
            if e > lo and s < hi:
                blk = source.read_block(b)
                sl = slice(max(lo, s) - s, min(hi, e) - s)
                keep = blk.valid[sl]
                parts.append((blk.index[sl][keep], blk.images[sl][keep]))
        if parts:
            yield np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        else:
            yield np.zeros(0, np.int64), None


class ArraySource(Source):
    """Samples already in memory (the built-in demo set, tests)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, index: np.ndarray | None = None,
                 block_size: int = 100_000, name: str = "array"):
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {images.shape}")
        self.images, self.labels = images, labels.astype(np.int64)
        self.index = np.arange(len(images), dtype=np.int64) if index is None else index.astype(np.int64)
        self.name = name
        n = len(images)
        self.block_sizes = [min(block_size, n - s) for s in range(0, n, block_size)] or [0]
        self._starts = np.cumsum([0] + self.block_sizes[:-1])

    def read_block(self, i: int) -> Block:
        s = int(self._starts[i])
        e = s + self.block_sizes[i]
        return Block(self.index[s:e], self.images[s:e], self.labels[s:e],
                     np.ones(e - s, dtype=bool), f"{self.name}[{s}:{e}]")
