"""Benchmarks that print figures; each compares two things timed in the same worker processes,
alternating blocks of steps so drift hits both.

- ``overhead``: raycl's step (Ray Train worker, DeepSpeed engine, method loss) vs a bare PyTorch loop
  with the same model, batch, views, loss and optimizer.
- ``lars``: the same raycl step with ZeRO-aware LARS vs SGD, and the bytes LARS's norm all-reduce
  adds per step next to the gradient reduction.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import ray.train
import torch
import torch.nn.functional as F
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from raycl import collectives as dist
from raycl.bank import MemoryBank, OnlineKMeans, Shard, inter_negatives
from raycl.config import apply_overrides, from_dict
from raycl.data import build_sources
from raycl.methods import MethodBatch, build_method
from raycl.optim import build_optimizer
from raycl.train.engine import build_engine, make_views, train_step
from raycl.train.trainer import init_ray


def _time(fn, steps: int) -> float:
    fn()  # warm-up step
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps


def _alternate(a, b, steps: int, repeats: int) -> tuple[float, float]:
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(_time(a, steps))
        tb.append(_time(b, steps))
    return statistics.median(ta), statistics.median(tb)


def _report(out: dict) -> None:
    # Ray Train V2 keeps the metrics of checkpointed reports only: carry the figures in one.
    with tempfile.TemporaryDirectory() as d:
        if ray.train.get_context().get_world_rank() == 0:
            with open(os.path.join(d, "bench.json"), "w") as fh:
                json.dump(out, fh)
        ray.train.report({"done": 1}, checkpoint=ray.train.Checkpoint.from_directory(d))


def _batch(cfg, rank: int, world: int, synthetic: bool = False):
    if synthetic:  # random images of the configured size: the bench measures compute, not data
        rng = np.random.default_rng(rank)
        b = cfg.data.batch_size // world
        shape = (b, cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
        return (
            rng.integers(0, 256, shape, dtype=np.uint8),
            np.arange(rank * b, (rank + 1) * b),
            rng.integers(0, 10, b),
        )

    data = build_sources(cfg)[0].read_all()
    b = cfg.data.batch_size // world
    sl = slice(rank * b, (rank + 1) * b)
    return data.images[sl], data.index[sl], data.labels[sl]


def _overhead_worker(config: dict) -> None:

    cfg = from_dict(config["cfg"])
    device = ray.train.torch.get_device()
    images, index, labels = _batch(cfg, 0, 1, config.get("synthetic", False))
    torch.manual_seed(cfg.run.seed)
    bare = build_method(cfg, cfg.data.channels).to(device)
    opt = build_optimizer(bare, cfg.optim, cfg.lr)
    views = make_views(cfg, bare)
    g = torch.Generator(device=device).manual_seed(0)
    t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    # The bare loop's bf16 is autocast over fp32 weights (what a PyTorch user writes); DeepSpeed's is
    # bf16 weights with fp32 master copies.
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if cfg.distributed.precision == "bf16"
        else torch.autocast(device.type, enabled=False)
    )
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

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

    t_bare, t_raycl = _alternate(bare_step, raycl_step, config["steps"], config["repeats"])
    _report({"bare_step_s": t_bare, "raycl_step_s": t_raycl, "threads": torch.get_num_threads()})


def _lars_worker(config: dict) -> None:

    cfg = from_dict(config["cfg"])
    ctx = ray.train.get_context()
    device = ray.train.torch.get_device()
    images, index, labels = _batch(cfg, ctx.get_world_rank(), ctx.get_world_size())
    engines = {}
    for name in ("sgd", "lars"):
        c = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"name": name})})
        engines[name] = build_engine(c, c.data.channels, steps_per_epoch=1000)
    views = make_views(cfg, engines["sgd"].module)
    g = torch.Generator(device=device).manual_seed(0)
    step = {
        n: (lambda e=e: train_step(e, views, images, index, labels, cfg.distributed.grad_accum, g, device))
        for n, e in engines.items()
    }
    t_sgd, t_lars = _alternate(step["sgd"], step["lars"], config["steps"], config["repeats"])
    params = [p for p in engines["lars"].module.parameters() if p.requires_grad]
    lars_opt = engines["lars"].optimizer.optimizer if hasattr(engines["lars"].optimizer, "optimizer") else None
    layers = (
        sum(z.n_layers for z, gr in zip(lars_opt.zero, lars_opt.param_groups) if not gr["lars_exclude"])
        if lars_opt is not None and getattr(lars_opt, "zero", None)
        else 0
    )
    _report(
        {
            "sgd_step_s": t_sgd,
            "lars_step_s": t_lars,
            "norm_allreduce_bytes": 2 * layers * 4,
            "grad_reduce_bytes": sum(p.numel() for p in params) * 4,
            "threads": torch.get_num_threads(),
        }
    )


def _run(worker, cfg, workers: int, extra: dict, address: str | None) -> tuple[dict, Any]:

    owned = init_ray(address)
    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", os.cpu_count())) // workers)
        dist = cfg.distributed.model_copy(update={"workers": workers, "torch_threads": None, "cpus_per_worker": cpus})
        cfg = cfg.model_copy(update={"distributed": dist})
        trainer = TorchTrainer(
            worker,
            train_loop_config={"cfg": cfg.to_dict(), **extra},
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=dist.use_gpu, resources_per_worker={"CPU": cpus}),
            run_config=RunConfig(
                name=f"bench-{worker.__name__.strip('_')}-{int(time.time())}",
                storage_path=os.path.abspath(os.path.expanduser(cfg.run.storage_path)),
            ),
        )
        result = trainer.fit()
        assert result.checkpoint is not None, "the benchmark worker reports its figures with a checkpoint"
        with open(os.path.join(result.checkpoint.path, "bench.json")) as fh:
            return json.load(fh), cfg
    finally:
        if owned:
            ray.shutdown()


def _describe(cfg) -> dict:
    return {
        "backbone": cfg.model.backbone,
        "width": cfg.model.width,
        "batch": cfg.data.batch_size,
        "workers": cfg.distributed.workers,
        "zero_stage": cfg.distributed.zero_stage,
        "device": "gpu" if cfg.distributed.use_gpu else "cpu",
    }


ARCHS = {
    # SimCLR's CIFAR setting and its ImageNet setting, per-GPU batch sizes that fit one GPU
    "resnet18_cifar": [
        "model.backbone=resnet18",
        "model.stem=small",
        "model.width=64",
        "data.image_size=32",
        "data.channels=3",
        "data.batch_size=512",
        "model.proj_hidden_dim=2048",
        "model.proj_out_dim=128",
    ],
    "resnet50": [
        "model.backbone=resnet50",
        "model.stem=imagenet",
        "model.width=64",
        "data.image_size=224",
        "data.channels=3",
        "data.batch_size=128",
        "model.proj_hidden_dim=2048",
        "model.proj_out_dim=128",
    ],
}


def step(
    cfg, arch: str, zero_stages=(1, 2), steps: int = 20, repeats: int = 3, address: str | None = None
) -> list[dict]:
    """raycl's training step (Ray Train worker, DeepSpeed ZeRO-1/2, the config's optimizer and
    precision, SimCLR) against a bare PyTorch loop with the same model, batch, loss, optimizer and
    precision, timed alternately in one worker. One row per ZeRO stage."""

    if arch not in ARCHS:
        raise ValueError(f"bench step: unknown --arch {arch!r}; available: {', '.join(ARCHS)}")
    rows = []
    for stage in zero_stages:
        c = from_dict(
            apply_overrides(cfg.to_dict(), ARCHS[arch] + [f"distributed.zero_stage={stage}", "distributed.workers=1"])
        )
        m, c = _run(_overhead_worker, c, 1, {"steps": steps, "repeats": repeats, "synthetic": True}, address)
        b = c.data.batch_size
        rows.append(
            {
                "bench": "step",
                "arch": arch,
                **_describe(c),
                "optimizer": c.optim.name,
                "precision": c.distributed.precision,
                "channels_last": c.distributed.channels_last,
                "bare_step_s": round(m["bare_step_s"], 5),
                "raycl_step_s": round(m["raycl_step_s"], 5),
                "speed_vs_bare": round(m["bare_step_s"] / m["raycl_step_s"], 4),
                "images_per_s_raycl": round(b / m["raycl_step_s"], 1),
            }
        )
    return rows


def overhead(cfg, steps: int = 20, repeats: int = 3, address: str | None = None) -> dict:
    m, cfg = _run(_overhead_worker, cfg, 1, {"steps": steps, "repeats": repeats}, address)
    b = cfg.data.batch_size
    return {
        "bench": "overhead",
        **_describe(cfg),
        "threads": m["threads"],
        "bare_step_s": round(m["bare_step_s"], 5),
        "raycl_step_s": round(m["raycl_step_s"], 5),
        "ratio": round(m["raycl_step_s"] / m["bare_step_s"], 4),
        "images_per_s_bare": round(b / m["bare_step_s"], 1),
        "images_per_s_raycl": round(b / m["raycl_step_s"], 1),
    }


def lars(cfg, steps: int = 20, repeats: int = 3, workers: int = 2, address: str | None = None) -> dict:
    m, cfg = _run(_lars_worker, cfg, workers, {"steps": steps, "repeats": repeats}, address)
    return {
        "bench": "lars",
        **_describe(cfg),
        "threads": m["threads"],
        "sgd_step_s": round(m["sgd_step_s"], 5),
        "lars_step_s": round(m["lars_step_s"], 5),
        "ratio": round(m["lars_step_s"] / m["sgd_step_s"], 4),
        "norm_allreduce_bytes": m["norm_allreduce_bytes"],
        "grad_reduce_bytes": m["grad_reduce_bytes"],
        "bytes_ratio": round(m["norm_allreduce_bytes"] / m["grad_reduce_bytes"], 6),
    }


def _random_batches(c: dict, world: int, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Seeded (index, unit embedding) pairs of the global batch, one per step plus a warm-up."""

    g = torch.Generator(device="cpu").manual_seed(1)
    return [
        (
            torch.randint(c["n"], (c["batch"] * world,), generator=g).to(device),
            F.normalize(torch.randn(c["batch"] * world, c["dim"], generator=g), dim=1).to(device),
        )
        for _ in range(c["steps"] + 1)
    ]


def _naive_semi_hard(bank, km, index, v, batch: int, negatives: int) -> list[torch.Tensor]:
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


def _bank_worker(config: dict) -> None:
    """One InterCLR bank step (update + k-means + semi-hard negatives), timed on this worker's shard,
    against a naive semi-hard sampler (full sort of every anchor's similarities) on the same rows."""

    c = config
    device = ray.train.torch.get_device()
    r, w = dist.rank(), dist.world_size()
    t0 = time.perf_counter()
    bank = MemoryBank(c["n"], c["dim"], 0.5, Shard(r, w), seed=0).to(device)
    km = OnlineKMeans(c["clusters"], bank, seed=0).to(device)
    km.bank = [bank]
    km.initialize(iters=c["kmeans_iters"])
    init_s = time.perf_counter() - t0
    batches = _random_batches(c, w, device)
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
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
        t3 = time.perf_counter()
        return t1 - t, t2 - t1, t3 - t2

    step(0)  # warm-up
    before = dict(dist.traffic)
    for i in range(1, c["steps"] + 1):
        for k, dt in zip(parts, step(i)):
            parts[k].append(dt)
    traffic = {k: (dist.traffic[k] - before[k]) / c["steps"] for k in before}

    naive = []
    for i in range(1, min(c["steps"], 3) + 1):
        t = time.perf_counter()
        _naive_semi_hard(bank, km, *batches[i], c["batch"], c["negatives"])
        sync()
        naive.append(time.perf_counter() - t)
    _report(
        {
            "parts_ms": {k: 1000 * statistics.median(v) for k, v in parts.items()},
            "naive_semi_hard_ms": 1000 * statistics.median(naive),
            "traffic_bytes_per_step": traffic,
            "bank_bytes_per_worker": bank.nbytes() + km.labels.numel() * km.labels.element_size(),
            "centroid_bytes": km.centroids.numel() * km.centroids.element_size(),
            "init_s": init_s,
            "device": str(device),
        }
    )


def bank(
    cfg,
    n: int,
    clusters: int,
    negatives: int,
    batch: int,
    workers: int = 1,
    steps: int = 5,
    dim: int = 128,
    kmeans_iters: int = 5,
    address: str | None = None,
) -> dict:
    extra = {
        "n": n,
        "clusters": clusters,
        "negatives": negatives,
        "batch": batch,
        "steps": steps,
        "dim": dim,
        "kmeans_iters": kmeans_iters,
    }
    m, cfg = _run(_bank_worker, cfg, workers, extra, address)
    ours = sum(m["parts_ms"].values())
    resnet50_grad_bytes = 25_557_032 * 4
    return {
        "bench": "bank",
        "device": m["device"],
        "workers": workers,
        **extra,
        "step_ms": round(ours, 2),
        **{f"{k}_ms": round(v, 2) for k, v in m["parts_ms"].items()},
        "naive_semi_hard_ms": round(m["naive_semi_hard_ms"], 2),
        "semi_hard_speedup_vs_naive": round(m["naive_semi_hard_ms"] / m["parts_ms"]["semi_hard"], 2),
        "bank_MiB_per_worker": round(m["bank_bytes_per_worker"] / 2**20, 2),
        "expected_MiB_N_D_4_over_W": round(n * dim * 4 / workers / 2**20, 2),
        "centroids_MiB": round(m["centroid_bytes"] / 2**20, 2),
        "traffic_bytes_per_step": {k: int(v) for k, v in m["traffic_bytes_per_step"].items()},
        "traffic_vs_resnet50_grad_allreduce": round(sum(m["traffic_bytes_per_step"].values()) / resnet50_grad_bytes, 4),
        "init_s": round(m["init_s"], 2),
    }
