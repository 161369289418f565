"""Parquet ingest: raycl's EpochLoader against decoding every row once in one process, and against
Ray Data on the same shards and CPUs. Prints figures (images/s, ratios) and one JSON line.

    python jobs/bench_loader.py SHARDS_URL [--workers 2] [--batch 256] [--size 28] [--channels 1]
                                [--ray-data] [--epochs 1]

Each worker's loader runs in its own process (as under Ray Train), all at once; the consumer does
no work, so the figure is what the loader can deliver. ``--ray-data`` adds the anchor pipeline:
read_parquet -> map_batches(decode) -> iter_torch_batches(local_shuffle_buffer_size=10000,
prefetch_batches=4), over a full epoch, with ray.init(num_cpus=workers).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time

import numpy as np


def reference(url, size, channels) -> float:
    """Every row group read and decoded once, in this process: the decode rate of one CPU."""
    from raycl.data.parquet import ParquetSource

    src = ParquetSource(url, size, channels)
    t0 = time.perf_counter()
    for b in range(len(src.block_sizes)):
        src.read_block(b)
    return len(src) / (time.perf_counter() - t0)


def run_rank(url, size, channels, batch, rank, world, epochs, threads, out):
    import torch

    torch.set_num_threads(1)
    from raycl.data import EpochLoader
    from raycl.data.parquet import ParquetSource

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
    procs = [ctx.Process(target=run_rank, args=(url, size, channels, batch, r, world, epochs, threads, q))
             for r in range(world)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    res = [q.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    rows = sum(r[1] for r in res)
    return {"images_per_s": rows / max(r[2] for r in res), "wall_s_with_startup": wall,
            "decoded_rows_per_epoch": sum(r[3] for r in res) / epochs, "rows": res[0][4]}


def ray_data(url, size, channels, batch, cpus) -> float:
    import ray

    from raycl.data.decode import decode_image

    ray.init(num_cpus=cpus, logging_level="ERROR", include_dashboard=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ds = ray.data.read_parquet(url, columns=["index", "image", "label"])

        def dec(b):
            return {"index": b["index"], "label": b["label"],
                    "image": np.stack([decode_image(x, size, channels) for x in b["image"]])}

        ds = ds.map_batches(dec, batch_format="numpy")
        t0, rows = time.perf_counter(), 0
        for b in ds.iter_torch_batches(batch_size=batch, local_shuffle_buffer_size=10000, prefetch_batches=4):
            rows += len(b["index"])
        return rows / (time.perf_counter() - t0)
    finally:
        ray.shutdown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="decode threads per worker")
    ap.add_argument("--ray-data", action="store_true")
    a = ap.parse_args()
    out = {"reference_1cpu_images_per_s": reference(a.url, a.size, a.channels)}
    print(f"decode every row once, one process: {out['reference_1cpu_images_per_s']:.0f} images/s", flush=True)
    r = raycl_loader(a.url, a.size, a.channels, a.batch, a.workers, a.epochs, a.threads)
    out["raycl"] = r
    print(f"raycl EpochLoader, {a.workers} workers x {a.threads} decode thread(s): {r['images_per_s']:.0f} images/s "
          f"({r['images_per_s'] / out['reference_1cpu_images_per_s']:.2f}x the one-process decode); "
          f"decoded {r['decoded_rows_per_epoch']:.0f} rows per epoch for {r['rows']} rows", flush=True)
    if a.ray_data:
        out["ray_data_images_per_s"] = ray_data(a.url, a.size, a.channels, a.batch, a.workers)
        print(f"Ray Data on {a.workers} CPUs: {out['ray_data_images_per_s']:.0f} images/s; raycl / Ray Data = "
              f"{r['images_per_s'] / out['ray_data_images_per_s']:.2f}x", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
