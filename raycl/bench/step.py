"""Benchmarks that print figures; each compares two things timed in the same worker processes,
alternating blocks of steps so drift hits both.

- ``overhead``: raycl's step (Ray Train worker, DeepSpeed engine, method loss) vs a bare PyTorch loop
  with the same model, batch, views, loss and optimizer.
- ``lars``: the same raycl step with ZeRO-aware LARS vs SGD, and the bytes LARS's norm all-reduce
  adds per step next to the gradient reduction.
"""

from __future__ import annotations

import os
import time
from typing import Any

import ray.train
import torch

from raycl.bench.measure import alternate, batch_of, measure_bank, measure_step
from raycl.config import apply_overrides, from_dict
from raycl.train import launch
from raycl.train.engine import build_engine, make_views, train_step
from raycl.train.launch import Launch, read_figures, report_figures
from raycl.train.trainer import init_ray


def _overhead_worker(config: dict) -> None:
    cfg = config["cfg"]  # the validated config itself
    device = ray.train.torch.get_device()
    report_figures(measure_step(cfg, device, config["steps"], config["repeats"], config.get("synthetic", False)))


def _bank_worker(config: dict) -> None:
    """One InterCLR bank step (update + k-means + semi-hard negatives), timed on this worker's shard,
    against a naive semi-hard sampler (full sort of every anchor's similarities) on the same rows."""
    report_figures(measure_bank(config, ray.train.torch.get_device()))


def _lars_worker(config: dict) -> None:

    cfg = config["cfg"]  # the validated config itself
    ctx = ray.train.get_context()
    device = ray.train.torch.get_device()
    images, index, labels = batch_of(cfg, ctx.get_world_rank(), ctx.get_world_size())
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
    t_sgd, t_lars = alternate(step["sgd"], step["lars"], config["steps"], config["repeats"])
    params = [p for p in engines["lars"].module.parameters() if p.requires_grad]
    lars_opt = engines["lars"].optimizer.optimizer if hasattr(engines["lars"].optimizer, "optimizer") else None
    layers = (
        sum(z.n_layers for z, gr in zip(lars_opt.zero, lars_opt.param_groups) if not gr["lars_exclude"])
        if lars_opt is not None and getattr(lars_opt, "zero", None)
        else 0
    )
    report_figures(
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
        run = Launch(worker, {"cfg": cfg, **extra}, name=f"bench-{worker.__name__.strip('_')}-{int(time.time())}",
                     storage={"storage_path": os.path.abspath(os.path.expanduser(cfg.run.storage_path))},
                     workers=workers, use_gpu=dist.use_gpu, cpus_per_worker=cpus)  # fmt: skip
        return read_figures(launch.fit(run)), cfg
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
