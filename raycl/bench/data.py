"""``raycl bench data URL``: the Parquet ingest measured four ways on the same shards and CPUs.

1. Every row decoded once in one process (the decode rate of one CPU).
2. raycl's EpochLoader: each worker's loader in its own process (as under Ray Train), all at once;
   the consumer does no work, so the figure is what the loader can deliver.
3. The anchor, Ray Data: read_parquet -> map_batches(decode) -> iter_torch_batches(
   local_shuffle_buffer_size=10000, prefetch_batches=4), over a full epoch, ray.init(num_cpus=W).
4. ``raycl train`` (the demo model, one epoch) from the shards, against the same images decoded
   into memory first (``data.preload: true``): what the loader costs the training step.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import tempfile
import time

import numpy as np
import ray
import torch

from raycl import api
from raycl.config import load_config, local_path
from raycl.data import EpochLoader
from raycl.data.decode import decode_image
from raycl.data.parquet import ParquetSource


def reference(url, size, channels) -> float:
    """Every row group read and decoded once, in this process: the decode rate of one CPU."""

    src = ParquetSource(url, size, channels)
    t0 = time.perf_counter()
    for b in range(len(src.block_sizes)):
        src.read_block(b)
    return len(src) / (time.perf_counter() - t0)


def run_rank(url, size, channels, batch, rank, world, epochs, threads, out):

    torch.set_num_threads(1)

    src = ParquetSource(url, size, channels)
    ld = EpochLoader(src, batch, rank, world, seed=0, decode_workers=threads)
    t0, rows = time.perf_counter(), 0
    for e in range(epochs):
        for b in ld.batches(e):
            rows += len(b.index)
    out.put((rank, rows, time.perf_counter() - t0, src.decoded.rows, len(src)))


def raycl_loader(url, size, channels, batch, world, epochs, threads) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [
        ctx.Process(target=run_rank, args=(url, size, channels, batch, r, world, epochs, threads, q))
        for r in range(world)
    ]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    res = [q.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    rows = sum(r[1] for r in res)
    return {
        "images_per_s": rows / max(r[2] for r in res),
        "wall_s_with_startup": wall,
        "decoded_rows_per_epoch": sum(r[3] for r in res) / epochs,
        "rows": res[0][4],
    }


def ray_data(url, size, channels, batch, cpus) -> float:

    ray.init(num_cpus=cpus, logging_level=logging.ERROR, include_dashboard=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ds = ray.data.read_parquet(url, columns=["index", "image", "label"])

        def dec(b):
            return {
                "index": b["index"],
                "label": b["label"],
                "image": np.stack([decode_image(x, size, channels) for x in b["image"]]),
            }

        ds = ds.map_batches(dec, batch_format="numpy")
        t0, rows = time.perf_counter(), 0
        for b in ds.iter_torch_batches(batch_size=batch, local_shuffle_buffer_size=10000, prefetch_batches=4):
            rows += len(b["index"])
        return rows / (time.perf_counter() - t0)
    finally:
        ray.shutdown()


def training(url, size, channels, batch, workers, preload: bool, overrides=()) -> dict:
    """One epoch of ``raycl train`` (the demo recipe) on the shards; images/s and data wait."""

    with tempfile.TemporaryDirectory(prefix="raycl-bench-") as tmp:
        cfg = load_config(
            api.demo_config_path(),
            [
                "data.dataset=parquet",
                f"data.path={url}",
                "data.num_samples=null",
                f"data.image_size={size}",
                f"data.channels={channels}",
                f"data.batch_size={batch}",
                f"distributed.workers={workers}",
                f"data.preload={str(preload).lower()}",
                "run.epochs=1",
                "run.checkpoint_every=1",
                "eval.every_epochs=1000",
                "run.log_every=1000",
                f"run.storage_path={tmp}",
                f"run.name=bench-{'memory' if preload else 'parquet'}",
                *overrides,
            ],
        )
        m = api.train(cfg)
    return {"images_per_s": m["images_per_s"], "wait_s": m.get("data/wait_s"), "epoch_time_s": m["epoch_time_s"]}


def checked_run(url: str, workers: int, batch: int, size: int, channels: int, **options) -> dict:
    """``run`` on ``url`` made absolute (Ray Data's readers run in other working directories), once its
    shards pass the checks ``raycl train`` makes (one clear line when there are none, or bad rows)."""

    url = local_path(url)
    ParquetSource(url, size, channels).scan()
    return run(url, workers, batch, size, channels, **options)


def run(
    url,
    workers=2,
    batch=256,
    size=28,
    channels=1,
    epochs=1,
    threads=1,
    ray_data_anchor=True,
    train=True,
    train_overrides=(),
    train_rounds=2,
    say=print,
) -> dict:
    out: dict = {"reference_1cpu_images_per_s": reference(url, size, channels)}
    say(f"decode every row once, one process: {out['reference_1cpu_images_per_s']:.0f} images/s")
    r = raycl_loader(url, size, channels, batch, workers, epochs, threads)
    out["raycl"] = r
    say(
        f"raycl EpochLoader, {workers} workers x {threads} decode thread(s): {r['images_per_s']:.0f} images/s "
        f"({r['images_per_s'] / out['reference_1cpu_images_per_s']:.2f}x the one-process decode); "
        f"decoded {r['decoded_rows_per_epoch']:.0f} rows per epoch for {r['rows']} rows"
    )
    if ray_data_anchor:
        out["ray_data_images_per_s"] = ray_data(url, size, channels, batch, workers)
        say(
            f"Ray Data on {workers} CPUs: {out['ray_data_images_per_s']:.0f} images/s; raycl / Ray Data = "
            f"{r['images_per_s'] / out['ray_data_images_per_s']:.2f}x"
        )
    if train:
        # ABBA order (shards, memory, memory, shards, ...): one-epoch runs on a shared 2-core machine
        # drift by several percent from run to run, and a fixed order would put the drift in the ratio.
        runs: dict[bool, list[dict]] = {False: [], True: []}
        for i in range(train_rounds):
            for preload in (False, True) if i % 2 == 0 else (True, False):
                m = training(url, size, channels, batch, workers, preload, train_overrides)
                runs[preload].append(m)
                say(
                    f"raycl train, one epoch from {'memory' if preload else 'the shards'}: {m['images_per_s']:.0f} "
                    f"images/s (data wait {m['wait_s']:.2f} s)"
                )
        shards, memory = (sum(r["images_per_s"] for r in runs[p]) / train_rounds for p in (False, True))
        out["train_parquet"], out["train_memory"] = runs[False], runs[True]
        out["train_parquet_vs_memory"] = shards / memory
        say(
            f"raycl train, {workers} workers, {train_rounds} rounds: {shards:.0f} images/s from the shards, "
            f"{memory:.0f} from memory; parquet / memory = {shards / memory:.3f}x"
        )
    return out
