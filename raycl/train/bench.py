"""``raycl bench overhead``: raycl's step (inside a Ray Train worker, DeepSpeed engine, method loss)
against a bare PyTorch loop with the same model, batch, views, loss and optimizer, timed in the
same worker process, alternating blocks so drift hits both."""
from __future__ import annotations

import dataclasses
import json
import os
import statistics
import tempfile
import time

import numpy as np
import torch

import ray.train
from raycl.config import from_dict


def _time(fn, steps: int) -> float:
    fn()  # warm-up step
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps


def _bench_worker(config: dict) -> None:
    from raycl.data import build_sources
    from raycl.methods import MethodBatch, build_method
    from raycl.optim import build_optimizer
    from raycl.train.engine import build_engine, make_views, train_step

    cfg = from_dict(config["cfg"])
    steps, repeats = config["steps"], config["repeats"]
    device = ray.train.torch.get_device()
    train_src, _ = build_sources(cfg)
    data = train_src.read_all()
    b = cfg.data.batch_size
    images, index, labels = data.images[:b], data.index[:b], data.labels[:b]

    torch.manual_seed(cfg.run.seed)
    bare = build_method(cfg, cfg.data.channels).to(device)
    opt = build_optimizer(bare, cfg.optim, cfg.lr)
    views = make_views(cfg, bare.n_views)
    g = torch.Generator(device=device).manual_seed(0)

    def bare_step():
        x = torch.from_numpy(images).to(device)
        loss, _ = bare(MethodBatch(views(x, g), torch.from_numpy(index).to(device), torch.from_numpy(labels).to(device)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    engine = build_engine(cfg, cfg.data.channels, steps_per_epoch=10 * steps * repeats)

    def raycl_step():
        train_step(engine, views, images, index, labels, cfg.distributed.grad_accum, g, device)

    t_bare, t_raycl = [], []
    for _ in range(repeats):
        t_bare.append(_time(bare_step, steps))
        t_raycl.append(_time(raycl_step, steps))
    out = {"bare_step_s": statistics.median(t_bare), "raycl_step_s": statistics.median(t_raycl),
           "bare_all": t_bare, "raycl_all": t_raycl, "threads": torch.get_num_threads()}
    # Ray Train V2 keeps the metrics of checkpointed reports: carry the figures in one.
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "bench.json"), "w") as fh:
            json.dump(out, fh)
        ray.train.report({"done": 1}, checkpoint=ray.train.Checkpoint.from_directory(d))


def overhead(cfg, steps: int = 20, repeats: int = 3, address: str | None = None) -> dict:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from raycl.train.trainer import init_ray

    owned = init_ray(address)
    try:
        cpus = int(ray.cluster_resources().get("CPU", os.cpu_count()))
        dist = dataclasses.replace(cfg.distributed, workers=1, torch_threads=None, cpus_per_worker=cpus)
        cfg = dataclasses.replace(cfg, distributed=dist)
        trainer = TorchTrainer(
            _bench_worker, train_loop_config={"cfg": cfg.to_dict(), "steps": steps, "repeats": repeats},
            scaling_config=ScalingConfig(num_workers=1, use_gpu=dist.use_gpu, resources_per_worker={"CPU": cpus}),
            run_config=RunConfig(name=f"bench-overhead-{int(time.time())}",
                                 storage_path=os.path.abspath(os.path.expanduser(cfg.run.storage_path))))
        with open(os.path.join(trainer.fit().checkpoint.path, "bench.json")) as fh:
            m = json.load(fh)
    finally:
        if owned:
            ray.shutdown()
    return {"bench": "overhead", "backbone": cfg.model.backbone, "width": cfg.model.width,
            "batch": cfg.data.batch_size, "zero_stage": cfg.distributed.zero_stage,
            "device": "gpu" if cfg.distributed.use_gpu else "cpu", "threads": m["threads"],
            "bare_step_s": round(m["bare_step_s"], 5), "raycl_step_s": round(m["raycl_step_s"], 5),
            "ratio": round(m["raycl_step_s"] / m["bare_step_s"], 4),
            "images_per_s_bare": round(cfg.data.batch_size / m["bare_step_s"], 1),
            "images_per_s_raycl": round(cfg.data.batch_size / m["raycl_step_s"], 1)}
