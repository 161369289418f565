"""What the benchmarks time, in whatever process runs them: no Ray here. A Ray Train worker
(``raycl.bench.step``) or a doctor task (``raycl.doctor.run``) calls these with its device.

- ``measure_step``: raycl's step (DeepSpeed engine, method loss) against a bare PyTorch loop with
  the same model, batch, views, loss, optimizer and precision, timed alternately.
- ``measure_bank``: one InterCLR bank step (update + k-means + semi-hard negatives) on this
  process's shard, against a naive semi-hard sampler on the same rows.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from raycl import collectives as dist
from raycl.bank import MemoryBank, OnlineKMeans, Shard, inter_negatives
from raycl.data import build_sources
from raycl.methods import MethodBatch, build_method
from raycl.optim import build_optimizer
from raycl.train.engine import build_engine, make_views, train_step


def time_per_call(fn, steps: int) -> float:
    fn()  # warm-up step
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps


def alternate(a, b, steps: int, repeats: int) -> tuple[float, float]:
    """Median seconds per call of ``a`` and of ``b``, timed in alternating blocks so drift hits both."""
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(time_per_call(a, steps))
        tb.append(time_per_call(b, steps))
    return statistics.median(ta), statistics.median(tb)


def synchronizer(device: torch.device):
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def batch_of(cfg, rank: int, world: int, synthetic: bool = False):
    """(images, index, labels) of this rank's share of one global batch: the config's data, or
    random images of the configured size (a benchmark of compute, not data)."""
    if synthetic:
        rng = np.random.default_rng(rank)
        b = cfg.data.batch_size // world
        shape = (b, cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
        return rng.integers(0, 256, shape, dtype=np.uint8), np.arange(rank * b, (rank + 1) * b), rng.integers(0, 10, b)
    data = build_sources(cfg)[0].read_all()
    b = cfg.data.batch_size // world
    sl = slice(rank * b, (rank + 1) * b)
    return data.images[sl], data.index[sl], data.labels[sl]


def measure_step(cfg, device: torch.device, steps: int, repeats: int, synthetic: bool = False) -> dict:
    images, index, labels = batch_of(cfg, 0, 1, synthetic)
    torch.manual_seed(cfg.run.seed)
    bare = build_method(cfg, cfg.data.channels).to(device)
    if cfg.distributed.channels_last:
        bare = bare.to(memory_format=torch.channels_last)
    opt = build_optimizer(bare, cfg.optim, cfg.lr)
    views = make_views(cfg, bare)
    g = torch.Generator(device=device).manual_seed(0)
    t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    # The bare loop's bf16 is autocast over fp32 weights (what a PyTorch user writes); DeepSpeed's is
    # bf16 weights with fp32 master copies.
    bf16 = cfg.distributed.precision == "bf16"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    sync = synchronizer(device)

    def bare_step():
        with autocast:
            loss, _ = bare(MethodBatch(views(t(images), g), t(index), t(labels)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()

    engine = build_engine(cfg, cfg.data.channels, steps_per_epoch=1000)

    def raycl_step():
        train_step(engine, views, images, index, labels, cfg.distributed.grad_accum, g, device)
        sync()

    t_bare, t_raycl = alternate(bare_step, raycl_step, steps, repeats)
    return {"bare_step_s": t_bare, "raycl_step_s": t_raycl, "threads": torch.get_num_threads()}


def random_batches(c: dict, world: int, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Seeded (index, unit embedding) pairs of the global batch, one per step plus a warm-up."""
    g = torch.Generator(device="cpu").manual_seed(1)
    return [
        (
            torch.randint(c["n"], (c["batch"] * world,), generator=g).to(device),
            F.normalize(torch.randn(c["batch"] * world, c["dim"], generator=g), dim=1).to(device),
        )
        for _ in range(c["steps"] + 1)
    ]


def naive_semi_hard(bank, km, index, v, batch: int, negatives: int) -> list[torch.Tensor]:
    """The reference sampler: full descending sort of each anchor's similarities to all N rows (the
    whole bank on one worker), drop the anchor's cluster, K uniform draws from the nearest 10%."""
    rows, labels = bank.full(), km.all_labels()
    a, alab = v[:batch], labels[index[:batch]]
    order = (a @ rows.t()).argsort(dim=1, descending=True)
    keep = labels[order] != alab.view(-1, 1)
    nearest = int(0.1 * rows.shape[0])
    picks = []
    for row in range(len(a)):
        cand = order[row][keep[row]][:nearest]
        picks.append(cand[torch.randperm(len(cand), device=cand.device)[:negatives]])
    return picks


def measure_bank(c: dict, device: torch.device) -> dict:
    """Milliseconds of each part of the bank step (median over ``c["steps"]``), the naive sampler's,
    the bytes it sent into collectives per step and what the bank holds."""
    r, w = dist.rank(), dist.world_size()
    t0 = time.perf_counter()
    bank = MemoryBank(c["n"], c["dim"], 0.5, Shard(r, w), seed=0).to(device)
    km = OnlineKMeans(c["clusters"], bank, seed=0).to(device)
    km.bank = [bank]
    km.initialize(iters=c["kmeans_iters"])
    init_s = time.perf_counter() - t0
    batches = random_batches(c, w, device)
    sync = synchronizer(device)
    parts: dict[str, list[float]] = {"update": [], "kmeans": [], "semi_hard": []}

    def step(i):
        index, v = batches[i]
        a_index, a_v = (index, v) if w > 1 else (index[: c["batch"]], v[: c["batch"]])
        t = time.perf_counter()
        bank.update(index, v)
        sync()
        t1 = time.perf_counter()
        km.step(index)
        sync()
        t2 = time.perf_counter()
        inter_negatives(bank, km, a_v, a_index, km.labels_of(a_index), c["negatives"], "semi_hard", 0, i)
        sync()
        return t1 - t, t2 - t1, time.perf_counter() - t2

    step(0)  # warm-up
    before = dict(dist.traffic)
    for i in range(1, c["steps"] + 1):
        for k, dt in zip(parts, step(i)):
            parts[k].append(dt)
    naive = []
    for i in range(1, min(c["steps"], 3) + 1):
        t = time.perf_counter()
        naive_semi_hard(bank, km, *batches[i], c["batch"], c["negatives"])
        sync()
        naive.append(time.perf_counter() - t)
    return {
        "parts_ms": {k: 1000 * statistics.median(v) for k, v in parts.items()},
        "naive_semi_hard_ms": 1000 * statistics.median(naive),
        "traffic_bytes_per_step": {k: (dist.traffic[k] - before[k]) / c["steps"] for k in before},
        "bank_bytes_per_worker": bank.nbytes() + km.labels.numel() * km.labels.element_size(),
        "centroid_bytes": km.centroids.numel() * km.centroids.element_size(),
        "init_s": init_s,
        "device": str(device),
    }
