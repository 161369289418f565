"""What ``raycl doctor`` measures on one node, in one process (a Ray task on that node; no Ray here).

Each check returns rows: ``check``, ``setting``, ``value`` (with ``unit``), the bare ``reference``
measured in the same process, their ``ratio``, a ``status`` (ok, below target, skipped, failed, info)
and a ``note`` (the target, or why a row was skipped). A check that fails becomes one failed row
naming the error: the doctor reports on a sick node instead of dying on it.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import platform
import socket
import tempfile
import time

import fsspec
import numpy as np
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from PIL import Image

from raycl.bench.measure import alternate, measure_bank, measure_step, synchronizer
from raycl.collectives import free_port
from raycl.config import apply_overrides, from_dict
from raycl.data import build_sources
from raycl.data.decode import decode_batch, decode_image
from raycl.data.loader import EpochLoader
from raycl.data.parquet import write_shard
from raycl.train.engine import build_engine, make_views, train_step


def row(check, setting="", value=None, unit="", reference=None, ratio=None, status="ok", note="") -> dict:
    return {"check": check, "setting": setting, "value": value, "unit": unit, "reference": reference,
            "ratio": ratio, "status": status, "note": note}  # fmt: skip


def skipped(check: str, setting: str, why: str) -> dict:
    return row(check, setting, status="skipped", note=why)


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def versions() -> list[dict]:
    cuda = torch.cuda.is_available()
    nccl_version = torch.cuda.nccl.version() if cuda else "-"  # a tuple (2, 21, 5); an int on old builds
    nccl = ".".join(map(str, nccl_version)) if isinstance(nccl_version, tuple) else str(nccl_version)
    setting = (
        f"Python {platform.python_version()} · torch {torch.__version__} · CUDA {torch.version.cuda or '-'} · "
        f"NCCL {nccl} · Ray {package_version('ray')} · DeepSpeed {package_version('deepspeed')}"
    )
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    gpus = ", ".join(f"{n} x{names.count(n)}" for n in dict.fromkeys(names)) or "none"
    host = socket.gethostname()
    return [dict(row("versions", setting, status="info"), node=host),
            dict(row("GPUs seen by torch", gpus, len(names), "GPUs", status="info"), node=host)]  # fmt: skip


# -- collectives: bus bandwidth as nccl-tests defines it ------------------------------------------


def _collective_rank(rank: int, world: int, port: int, backend: str, nbytes: int, iters: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    tdist.init_process_group(backend, rank=rank, world_size=world)
    device = torch.device(f"cuda:{rank}") if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    x = torch.ones(nbytes // 4, device=device)
    parts = [torch.empty_like(x) for _ in range(world)]
    sync = synchronizer(device)
    figures = {}
    for name, op in (("all_reduce", lambda: tdist.all_reduce(x)), ("all_gather", lambda: tdist.all_gather(parts, x))):
        op()
        sync()
        tdist.barrier()
        t = time.perf_counter()
        for _ in range(iters):
            op()
        sync()
        figures[name] = (time.perf_counter() - t) / iters
    if rank == 0:
        out.put(figures)
    tdist.destroy_process_group()


def collectives(backend: str, world: int, nbytes: int, iters: int) -> list[dict]:
    """All-reduce and all-gather of ``nbytes`` per rank across ``world`` local processes. Bus
    bandwidth (nccl-tests): all-reduce moves 2(n-1)/n of the buffer per rank, all-gather (n-1)/n of
    the gathered output."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_collective_rank, args=(r, world, port, backend, nbytes, iters, out))
             for r in range(world)]  # fmt: skip
    for p in procs:
        p.start()
    figures = out.get(timeout=300)
    for p in procs:
        p.join(timeout=60)
    setting = f"{backend}, {world} {'GPUs' if backend == 'nccl' else 'CPU processes'}, {nbytes >> 20} MiB"
    factor = {"all_reduce": 2 * (world - 1) / world, "all_gather": (world - 1) / world}
    sizes = {"all_reduce": nbytes, "all_gather": nbytes * world}
    return [row(f"{name.replace('_', '-')} bus bandwidth", setting,
                round(sizes[name] / seconds * factor[name] / 1e9, 2), "GB/s", status="ok")
            for name, seconds in figures.items()]  # fmt: skip


# -- the training step, the bank, decode and the loader ------------------------------------------


def single_process_group(device: torch.device) -> None:
    """DeepSpeed's engines need a process group; a doctor task is its own world of one."""
    if not tdist.is_initialized():
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1",
                          LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")  # fmt: skip
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)


def step_row(base: dict, label: str, overrides: list[str], device, steps: int, repeats: int) -> dict:
    cfg = from_dict(apply_overrides(base, overrides))
    m = measure_step(cfg, device, steps, repeats, synthetic=True)
    batch = cfg.data.batch_size
    lars_zero = cfg.optim.name == "lars" and cfg.distributed.zero_stage in (1, 2) and device.type == "cuda"
    ratio = round(m["bare_step_s"] / m["raycl_step_s"], 3)
    return row("step vs bare PyTorch", label, round(batch / m["raycl_step_s"], 1), "images/s",
               round(batch / m["bare_step_s"], 1), ratio, "below target" if lars_zero and ratio < 0.95 else "ok",
               "target >= 0.95 (LARS under ZeRO-1/2 on a GPU)" if lars_zero else "")  # fmt: skip


NAIVE = "reference: a naive semi-hard sampler (ratio: its time / ours, sampling only)"


def bank_row(sizes: dict, device) -> dict:
    m = measure_bank({**sizes, "dim": 128, "kmeans_iters": 2}, device)
    step_ms = sum(m["parts_ms"].values())
    target = sizes["n"] >= 1_281_167 and device.type == "cuda"
    return row("bank step (update + k-means + semi-hard)",
               f"{sizes['n']:,} rows, {sizes['clusters']:,} clusters, {sizes['negatives']:,} negatives, {device.type}",
               round(step_ms, 2), "ms", round(m["naive_semi_hard_ms"], 2),
               round(m["naive_semi_hard_ms"] / max(m["parts_ms"]["semi_hard"], 1e-9), 2),
               "below target" if target and step_ms >= 10 else "ok",
               ("target < 10 ms at 1.28M rows; " if target else "") + NAIVE)  # fmt: skip


def jpeg_rows(n: int, size: int, channels: int, seed: int = 0) -> list[bytes]:
    """Smooth random images (so JPEG has something to compress), encoded at quality 90."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        (im.convert("L") if channels == 1 else im).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def decode_rows(n: int, size: int, device, step_images_per_s: float | None) -> list[dict]:
    """``data.decode: cpu`` (Pillow, one thread, as one loader thread runs it) against
    ``data.decode: gpu`` (batched nvJPEG), on the same JPEG bytes; ratios against what the step eats."""
    data = jpeg_rows(n, size, 3)
    t = time.perf_counter()
    for d in data:
        decode_image(d, size, 3)
    cpu = n / (time.perf_counter() - t)
    consumes = f"the step consumes {step_images_per_s:,.0f} images/s" if step_images_per_s else ""
    rows = [row("decode, CPU (Pillow, 1 thread)", f"{n} JPEG {size} px", round(cpu, 1), "images/s",
                step_images_per_s, round(cpu / step_images_per_s, 2) if step_images_per_s else None, "ok",
                consumes + (" (ratio: decode / step; loader threads multiply it)" if consumes else ""))]  # fmt: skip
    if device.type != "cuda":
        return rows + [skipped("decode, GPU (nvJPEG)", f"{n} JPEG {size} px", "needs a GPU (data.decode: gpu)")]
    sync = synchronizer(device)
    decode_batch(data[:8], size, 3, device)
    sync()
    t = time.perf_counter()
    for s in range(0, n, 256):
        decode_batch(data[s : s + 256], size, 3, device)
    sync()
    gpu = n / (time.perf_counter() - t)
    status = "ok" if not step_images_per_s or gpu > step_images_per_s else "below target"
    return rows + [row("decode, GPU (nvJPEG)", f"{n} JPEG {size} px, batches of 256", round(gpu, 1), "images/s",
                       step_images_per_s, round(gpu / step_images_per_s, 2) if step_images_per_s else None, status,
                       "target: faster than the step consumes")]  # fmt: skip


def loader_row(base: dict, rows: int, device, steps: int) -> dict:
    """The training step fed by raycl's loader from JPEG Parquet shards written here, against the
    same step on one batch held in memory."""
    cfg0 = from_dict(base)
    size, channels = cfg0.data.image_size, cfg0.data.channels
    with tempfile.TemporaryDirectory() as folder:
        images = jpeg_rows(rows, size, channels, seed=1)
        write_shard(fsspec.filesystem("file"), folder, 0, np.arange(rows), images, np.arange(rows) % 10, 256)
        cfg = from_dict(apply_overrides(base, ["data.dataset=parquet", f"data.path={folder}", "data.num_samples=null"]))
        source = build_sources(cfg)[0]
        loader = EpochLoader(source, cfg.data.batch_size, seed=0, decode_workers=max(1, (os.cpu_count() or 2) // 2))
        engine = build_engine(cfg, channels, steps_per_epoch=1000)
        views = make_views(cfg, engine.module)
        g = torch.Generator(device=device).manual_seed(0)
        sync = synchronizer(device)
        held = next(iter(loader.batches(0)))
        batches = loader.batches(1)

        def from_loader():
            b = next(batches)
            train_step(engine, views, b.images, b.index, b.labels, 1, g, device)
            sync()

        def from_memory():
            train_step(engine, views, held.images, held.index, held.labels, 1, g, device)
            sync()

        per = min(steps, loader.steps_per_epoch - 1)  # + 1 warm-up batch, all from epoch 1
        t_loader, t_memory = alternate(from_loader, from_memory, per, 1)
    b = cfg.data.batch_size
    return row("step fed by the loader vs from memory",
               f"{rows:,} JPEG rows {size} px, batch {b}, {loader.decode_workers} decode threads",
               round(b / t_loader, 1), "images/s", round(b / t_memory, 1), round(t_memory / t_loader, 3), "ok",
               "ratio 1.0: the step never waits for data")  # fmt: skip
