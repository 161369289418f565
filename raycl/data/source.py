"""Where samples come from: a source is a list of blocks (a Parquet row group, an in-memory array).

Reading is split in two so that a row is decoded at most once per epoch wherever it is read:
``read_raw(i)`` gives a block's ids, labels and *encoded* payload (cheap: bytes, no pixels), and
``decode(raw, offsets)`` turns just the rows asked for into pixels. A worker that trains on 300 of a
row group's 1,000 rows decodes 300.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Block:
    index: np.ndarray  # int64 [n], global sample ids
    images: np.ndarray  # uint8 [n, C, H, W]
    labels: np.ndarray  # int64 [n], -1 when unknown
    valid: np.ndarray  # bool [n], False for rows whose bytes did not decode (on_corrupt: skip)
    where: str = ""  # shard description for error messages


@dataclass
class Raw:
    """A block before decoding: ``payload`` is a list of encoded images (Parquet) or an already
    decoded uint8 [n, C, H, W] array (in-memory sources); ``rows`` are the positions in the block."""

    index: np.ndarray
    labels: np.ndarray
    payload: Any  # decoded images (an array) or encoded bytes (a list), per source
    rows: np.ndarray
    where: str = ""
    group: int = 0

    def take(self, offs: np.ndarray) -> Raw:
        p = [self.payload[o] for o in offs] if isinstance(self.payload, list) else self.payload[offs]
        return Raw(self.index[offs], self.labels[offs], p, self.rows[offs], self.where, self.group)


class Source:
    """A dataset as blocks. Subclasses set ``block_sizes`` and implement ``read_raw`` and, when the
    payload is encoded, ``decode``. ``random_access``: any row can be read without touching the rest
    of its block (in-memory data), so the loader may draw global batches from anywhere."""

    block_sizes: list[int]
    random_access = False

    def __len__(self) -> int:
        return int(sum(self.block_sizes))

    @property
    def starts(self) -> np.ndarray:
        return np.cumsum([0] + list(self.block_sizes[:-1])).astype(np.int64)

    def read_raw(self, i: int) -> Raw:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def decoded(self) -> DecodeCounter:
        """Rows turned into pixels so far by this process (``data/decoded_rows``)."""
        if "_decoded" not in self.__dict__:
            self.__dict__["_decoded"] = DecodeCounter()
        return self.__dict__["_decoded"]

    def decode(self, raw: Raw, offs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(images uint8 [n, C, H, W], valid bool [n]) of rows ``offs`` of ``raw`` (all when None)."""
        images = raw.payload if offs is None else raw.payload[offs]
        self.decoded.add(len(images))
        return images, np.ones(len(images), dtype=bool)

    def read_rows(self, i: int, offs: np.ndarray | None = None) -> Block:
        raw = self.read_raw(i)
        if offs is not None:
            raw = raw.take(np.asarray(offs))
        images, valid = self.decode(raw)
        return Block(raw.index, images, raw.labels, valid, raw.where)

    def read_block(self, i: int) -> Block:
        return self.read_rows(i)

    def read_positions(self, positions: np.ndarray) -> Block:
        """Rows at global positions (into the concatenated blocks), in the order given."""
        positions = np.asarray(positions, dtype=np.int64)
        block_of = np.searchsorted(self.starts, positions, side="right") - 1
        parts, order = [], []
        for b in np.unique(block_of):
            sel = np.flatnonzero(block_of == b)
            parts.append(self.read_rows(int(b), positions[sel] - self.starts[b]))
            order.append(sel)
        return concat_blocks(parts, np.concatenate(order) if order else np.zeros(0, np.int64))

    def has_labels(self) -> bool:
        """Whether any row has a label (>= 0); evaluation needs some. Reads no pixels."""
        return any(bool((self.labels_of(i) >= 0).any()) for i in range(len(self.block_sizes)))

    def labels_of(self, i: int) -> np.ndarray:
        return self.read_raw(i).labels

    def read_all(self) -> Block:
        """Every row decoded: for small data and tests only (ImageNet decoded is ~190 GB)."""
        return concat_blocks([self.read_block(i) for i in range(len(self.block_sizes))])


def concat_blocks(parts: list[Block], order: np.ndarray | None = None) -> Block:
    """Blocks joined end to end; with ``order``, row j of the result is the row placed at order[j]."""
    out = Block(
        np.concatenate([b.index for b in parts]),
        np.concatenate([b.images for b in parts]),
        np.concatenate([b.labels for b in parts]),
        np.concatenate([b.valid for b in parts]),
        "all",
    )
    if order is not None:
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        out = Block(out.index[inv], out.images[inv], out.labels[inv], out.valid[inv], out.where)
    return out


class DecodeCounter:
    """Rows a source has decoded (thread-safe: the loader decodes in a pool of threads)."""

    def __init__(self):
        self._lock, self.rows = threading.Lock(), 0

    def add(self, n: int) -> None:
        with self._lock:
            self.rows += n


class RowSubset(Source):
    """The rows of ``source`` at sorted global ``positions``, read on demand (a held-out split, a
    random sample for the kNN monitor): nothing is decoded until a block of it is read."""

    def __init__(self, source: Source, positions: np.ndarray):
        positions = np.sort(np.asarray(positions, dtype=np.int64))
        self.parent, self.random_access, self.positions = source, source.random_access, positions
        block_of = np.searchsorted(source.starts, positions, side="right") - 1
        self.parts = [(int(b), positions[block_of == b] - source.starts[b]) for b in np.unique(block_of)]
        self.block_sizes = [len(offs) for _, offs in self.parts] or [0]

    def read_raw(self, i: int) -> Raw:
        b, offs = self.parts[i]
        return self.parent.read_raw(b).take(offs)

    def decode(self, raw: Raw, offs: np.ndarray | None = None):
        return self.parent.decode(raw, offs)

    def labels_of(self, i: int) -> np.ndarray:
        b, offs = self.parts[i]
        return self.parent.labels_of(b)[offs]


def sample_positions(n: int, k: int | None, seed: int) -> np.ndarray | None:
    """A seeded uniform sample of ``k`` of ``n`` row positions (sorted), or None for all rows.
    Shards are often sorted by class: a prefix of them would hold a few classes only."""
    if k is None or k >= n:
        return None
    return np.sort(np.random.default_rng([seed, 0x5EED]).choice(n, size=k, replace=False))


def subset(source: Source, k: int | None, seed: int) -> Source:
    pos = sample_positions(len(source), k, seed)
    return source if pos is None else RowSubset(source, pos)


def rounds(source: Source, chunk: int, rank: int, world: int):
    """Stream a whole source once across ``world`` workers: the rows, in block order, are cut into
    chunks of ``chunk`` rows; in round k worker r gets chunk k * world + r (or nothing past the end).
    Every worker runs the same number of rounds, and a chunk holds the same rows whatever ``world``
    is, so a batched forward over it gives the same numbers on any worker count. Only the chunk's
    rows are decoded. Yields (index int64 [n], images uint8 [n, C, H, W]) without corrupt rows."""
    n = len(source)
    starts = source.starts
    n_chunks = -(-n // chunk)
    for k in range(-(-n_chunks // world)):
        c = k * world + rank
        lo, hi = c * chunk, min((c + 1) * chunk, n)
        parts = []
        for b in range(len(source.block_sizes)):
            s, e = int(starts[b]), int(starts[b]) + source.block_sizes[b]
            if e > lo and s < hi:
                blk = source.read_rows(b, np.arange(max(lo, s) - s, min(hi, e) - s))
                parts.append((blk.index[blk.valid], blk.images[blk.valid]))
        if parts:
            yield np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        else:
            yield np.zeros(0, np.int64), None


class ArraySource(Source):
    """Samples already in memory (the built-in demo set, tests)."""

    random_access = True

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        index: np.ndarray | None = None,
        block_size: int = 100_000,
        name: str = "array",
    ):
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {images.shape}")
        self.images, self.labels = images, labels.astype(np.int64)
        self.index = np.arange(len(images), dtype=np.int64) if index is None else index.astype(np.int64)
        self.name = name
        n = len(images)
        self.block_sizes = [min(block_size, n - s) for s in range(0, n, block_size)] or [0]

    def read_raw(self, i: int) -> Raw:
        s = int(self.starts[i])
        e = s + self.block_sizes[i]
        return Raw(self.index[s:e], self.labels[s:e], self.images[s:e], np.arange(e - s), f"{self.name}[{s}:{e}]")
