"""Which rows a worker reads in an epoch, and in what order. Pure functions of (sizes, seed, epoch,
rank, world): a resumed epoch replays exactly, and the plan is known before anything is read.

Both plans keep: every sample once per epoch (when N is not a multiple of the global batch the last
batch is completed with the epoch's first rows, as torch's DistributedSampler pads, unless
``drop_last``), and the same number of steps on every worker (a worker with fewer would hang the
others in a collective). They return global row positions (into the concatenated blocks).
"""

from __future__ import annotations

import numpy as np


def epoch_order(block_sizes: list[int], starts: np.ndarray, rng, need: int, shuffle_rows: bool) -> np.ndarray:
    """Blocks in a random order (rows in a random order inside each when ``shuffle_rows``),
    cut or wrapped around to ``need`` rows."""
    order = np.concatenate(
        [
            starts[b] + (rng.permutation(block_sizes[b]) if shuffle_rows else np.arange(block_sizes[b]))
            for b in rng.permutation(len(block_sizes))
        ]
    )
    return np.resize(order, need) if need > len(order) else order[:need]


def global_batches_plan(
    block_sizes, starts, steps: int, G: int, rank: int, world: int, seed: int, epoch: int, window: int, accum: int = 1
) -> np.ndarray:
    """For random-access (in-memory) data: the epoch's order is shuffled inside windows of
    ``window`` rows, each global batch is a contiguous run of it, cut into ``accum`` micro-batches,
    and worker r takes the r-th slice of each: the samples of every global micro-batch do not
    depend on the worker count, so a run resumed on another count mid-epoch trains on exactly the
    rows the earlier steps had not reached, in the same forward passes."""
    order = epoch_order(block_sizes, starts, np.random.default_rng([seed, epoch]), steps * G, True)
    mixer = np.random.default_rng([seed, epoch, 1])
    for s in range(0, len(order), window):
        order[s : s + window] = mixer.permutation(order[s : s + window])
    return order.reshape(steps, accum, world, G // (world * accum))[:, :, rank].reshape(-1).copy()


def dealt_blocks_plan(
    block_sizes, starts, steps: int, G: int, rank: int, world: int, seed: int, epoch: int, mix_blocks: int
) -> np.ndarray:
    """For block-decoded data (Parquet row groups): the row groups, in a seeded random order, are
    dealt to the workers as contiguous equal runs of rows (so each row is read and decoded by one
    worker only; a row group on a boundary is split between two). Each worker then permutes its rows
    within windows of ``mix_blocks`` consecutive row groups, so a batch draws from up to
    ``mix_blocks`` row groups while only those need to be held (encoded) at once."""
    order = epoch_order(block_sizes, starts, np.random.default_rng([seed, epoch]), steps * G, False)
    share = steps * (G // world)
    mine = order[rank * share : (rank + 1) * share].copy()
    block_of = np.searchsorted(starts, mine, side="right") - 1
    runs = np.concatenate([[0], np.flatnonzero(np.diff(block_of)) + 1])  # where each row group's run starts
    edges = list(runs[::mix_blocks]) + [len(mine)]
    local = np.random.default_rng([seed, epoch, 1 + rank])
    for a, b in zip(edges[:-1], edges[1:]):
        mine[a:b] = local.permutation(mine[a:b])
    return mine


def resumed_rows(plan, segments: list, steps: int, G: int, rank: int) -> np.ndarray:
    """This worker's rows for the rest of an epoch that earlier ran in ``segments``: [(workers,
    first step), ...], the last being this run's. ``plan(r, w)`` is worker r's whole-epoch plan at w
    workers. At each change of worker count the rows the previous workers had not reached are laid
    end to end (worker by worker, each in its own order) and dealt to the new workers as contiguous
    equal shares: no row is lost or repeated, and each new worker reads a few old workers' row-group
    runs rather than all of them."""
    w0, s0 = segments[0]
    if s0 != 0:
        raise ValueError(f"an epoch's first segment starts at step 0, not {s0}")
    cur, cur_start = [plan(r, w0) for r in range(w0)], 0
    for w, s in segments[1:]:
        per_old = G // len(cur)
        rest = np.concatenate([a[(s - cur_start) * per_old :] for a in cur])
        n = (steps - s) * (G // w)
        if len(rest) != n * w:
            raise ValueError(f"{len(rest)} rows left at step {s} cannot be dealt to {w} workers x {n}")
        cur, cur_start = [rest[r * n : (r + 1) * n] for r in range(w)], s
    return cur[rank]
