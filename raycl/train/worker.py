"""The function every Ray Train worker runs: build, maybe resume, train, monitor, checkpoint."""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import time

import numpy as np
import torch

import ray.train
import ray.train.torch
from raycl import dist
from raycl.config import from_dict
from raycl.data import EpochLoader, build_sources, eval_ready, rounds
from raycl.data.decode import decode_batch
from raycl.eval import extract, knn_top1
from raycl.eval.features import rows_per_forward
from raycl.train import checkpoint as ck
from raycl.train.engine import build_engine, make_views, train_step
from raycl.train.progress import Progress


INIT_CHUNK = 256   # rows per forward when the bank is initialised from features (fixed: layout-independent)


def say(line: str) -> None:
    """Write to stdout directly: Ray Train's patched print would log the line a second time."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def knn_monitor(backbone, train_src, eval_src, cfg, device) -> float | None:
    """kNN top-1 on the held-out split's labeled rows; feature extraction is split across the workers."""
    r, w = dist.rank(), dist.world_size()
    e, seed, bs = cfg.eval, cfg.run.seed, rows_per_forward(cfg.data.channels, cfg.data.image_size)
    bank, bank_y = extract(backbone, train_src, (r, w), bs, device, e.max_train_samples, seed)
    test, test_y = extract(backbone, eval_src, (r, w), bs, device, e.max_eval_samples, seed)
    bank, bank_y = dist.all_gather_nograd(bank.to(device)), dist.all_gather_nograd(bank_y.to(device))
    test, test_y = dist.all_gather_nograd(test.to(device)), dist.all_gather_nograd(test_y.to(device))
    return knn_top1(bank, bank_y, test, test_y, cfg.eval.knn_k, cfg.eval.knn_temperature)


def data_metrics(decoded: int, waited_s: float, rss_start_mb: float, device) -> dict:
    """Rows decoded by all workers this epoch, the longest any worker's loop waited for data, a
    worker's largest peak RSS this epoch (the kNN monitor included) and its largest rise over the
    RSS the epoch started from (what the data path and the monitor held at most)."""
    t = torch.tensor([float(decoded)], device=device)
    peak = peak_rss_mb()
    waits = dist.all_gather_nograd(torch.tensor([waited_s, peak, peak - rss_start_mb], device=device)[None])
    return {"data/decoded_rows": int(dist.all_reduce_sum(t).item()), "data/wait_s": float(waits[:, 0].max()),
            "data/peak_rss_mb": float(waits[:, 1].max()), "data/rss_rise_mb": float(waits[:, 2].max())}


def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            return next(float(line.split()[1]) / 1024.0 for line in f if line.startswith(field + ":"))
    except (OSError, StopIteration, ValueError):
        return None


def reset_peak_rss() -> float:
    """Start a new peak-RSS window (Linux: ``5`` > /proc/self/clear_refs resets VmHWM) so an epoch's
    peak is not the high-water mark of engine set-up; returns the RSS now, in MB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:   # no procfs or not allowed: the peak stays the process's lifetime peak
        pass
    now = _proc_status_mb("VmRSS")
    return peak_rss_mb() if now is None else now


def peak_rss_mb() -> float:
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux


def aug_generator(seed: int, epoch: int, rank: int, device) -> torch.Generator:
    """Augmentation randomness is a function of (seed, epoch, rank): a resumed epoch replays exactly."""
    g = torch.Generator(device=device)
    g.manual_seed(int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0]))
    return g


def save_checkpoint(engine, cfg, epoch: int, global_step: int, metrics: dict, rank: int,
                    history: list[dict], resumes: list[int]) -> None:
    extra = engine.module.gather_state() if hasattr(engine.module, "gather_state") else None  # a collective
    with tempfile.TemporaryDirectory(prefix="raycl-ckpt-") as tmp:
        engine.save_checkpoint(os.path.join(tmp, ck.DS_DIR), tag=ck.DS_TAG)
        if extra is not None and rank == 0:
            ck.atomic_torch_save(extra, os.path.join(tmp, ck.METHOD_STATE_FILE))
        torch.save(ck.rng_state(), os.path.join(tmp, f"rng_rank{rank}.pt"))
        if rank == 0:
            ck.write_state(tmp, {"epoch": epoch, "global_step": global_step, "config": cfg.to_dict(),
                                 "signature": engine.module.signature(), "metrics": metrics,
                                 "history": history, "resumes": resumes, "world_size": dist.world_size()})
            torch.save({"config": cfg.to_dict(), "state_dict": engine.module.state_dict()},
                       os.path.join(tmp, ck.MODEL_FILE))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def resume(engine, rank: int) -> tuple[int, int, list[dict], list[int]]:
    """Load the latest checkpoint Ray Train knows of; return (epochs done, global step, history)."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0, 0, [], []
    with checkpoint.as_directory() as d:
        state = ck.read_state(d)
        ck.check_signature(state["signature"], engine.module.signature(), d)
        engine.load_checkpoint(os.path.join(d, ck.DS_DIR), tag=ck.DS_TAG)
        method_state = os.path.join(d, ck.METHOD_STATE_FILE)
        if os.path.exists(method_state):   # the whole bank: each worker takes its shard of it
            engine.module.load_gathered_state(ck.safe_load(method_state, "method state"))
        rng_file = os.path.join(d, f"rng_rank{rank}.pt")
        if os.path.exists(rng_file):
            ck.set_rng_state(ck.safe_load(rng_file, "RNG state"))
    resumes = state.get("resumes", []) + [state["epoch"] + 1]
    return state["epoch"] + 1, state["global_step"], state.get("history", []), resumes


def train_loop(config: dict) -> None:
    cfg = from_dict(config)
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if cfg.distributed.torch_threads:
        torch.set_num_threads(cfg.distributed.torch_threads)
    device = ray.train.torch.get_device()

    train_src, eval_src = build_sources(cfg)
    no_eval = eval_ready(train_src, eval_src)
    if no_eval and rank == 0:
        say(f"[raycl] {no_eval}")
    d = cfg.data
    loader = EpochLoader(train_src, d.batch_size, rank, world, cfg.run.seed, d.drop_last, d.shuffle_window,
                         d.mix_row_groups, d.prefetch, d.decode_workers or max(1, round(cfg.distributed.cpus_per_worker)),
                         encoded=d.decode == "gpu", pin_memory=device.type == "cuda")
    spe = loader.steps_per_epoch
    engine = build_engine(cfg, cfg.data.channels, spe)
    views = make_views(cfg, engine.module)
    start_epoch, global_step, history, resumes = resume(engine, rank)
    if rank == 0 and start_epoch:
        say(f"[raycl] resumed from epoch {start_epoch} (global step {global_step})")
    if global_step == 0 and cfg.method.bank_init == "features" and hasattr(engine.module, "init_from_features"):
        t0 = time.perf_counter()
        engine.module.init_from_features(rounds(train_src, INIT_CHUNK, rank, world), device)
        if rank == 0:
            say(f"[raycl] bank initialised from the initial network's features of {len(train_src)} samples, "
                f"k-means over them ({time.perf_counter() - t0:.1f} s)")

    pusher = None
    if cfg.method.bank_sync_every and hasattr(engine.module, "bank"):
        from raycl.train.bank_server import Pusher

        pusher = Pusher(cfg.run.name, cfg.method.bank_sync_every)
    epochs = cfg.run.epochs
    progress = Progress(epochs * spe, spe, epochs, cfg.data.batch_size, global_step)
    stop_at = epochs if cfg.run.stop_after_epochs is None else min(epochs, start_epoch + cfg.run.stop_after_epochs)
    for epoch in range(start_epoch, stop_at):
        engine.train()
        g = aug_generator(cfg.run.seed, epoch, rank, device)
        t0, loss_sum, skipped, log_sums = time.perf_counter(), torch.zeros((), device=device), 0, {}
        decoded0, rss0 = train_src.decoded.rows, reset_peak_rss()
        for step, batch in enumerate(loader.batches(epoch)):
            images = batch.images if batch.encoded is None else decode_batch(batch.encoded, d.image_size, d.channels, device)
            loss, logs = train_step(engine, views, images, batch.index, batch.labels,
                                    cfg.distributed.grad_accum, g, device)
            loss_sum += loss
            for k, v in logs.items():
                log_sums[k] = log_sums.get(k, 0.0) + float(v)
            skipped += batch.skipped
            global_step += 1
            if pusher is not None:
                pusher.maybe_push(engine.module, global_step, logs, rank)
            if rank == 0 and ((step + 1) % cfg.run.log_every == 0 or step + 1 == spe):
                say(progress.line(epoch, step, global_step, loss.item(), engine.get_lr()[0]))
        epoch_time = time.perf_counter() - t0
        decoded = train_src.decoded.rows - decoded0   # before the monitor decodes its sample
        skipped_all = int(dist.all_reduce_sum(torch.tensor([skipped], device=device)).item())
        last = epoch + 1 == epochs
        metrics = {"epoch": epoch + 1, "global_step": global_step,
                   "loss": float(dist.all_reduce_sum(loss_sum.clone()).item() / (spe * world)),
                   "lr": float(engine.get_lr()[0]), "images_per_s": spe * cfg.data.batch_size / epoch_time,
                   "epoch_time_s": epoch_time, "corrupt_skipped": skipped_all,
                   **{f"method/{k}": v / spe for k, v in log_sums.items()}}
        if hasattr(engine.module, "bank_stats"):
            metrics.update({f"bank/{k}": v for k, v in engine.module.bank_stats().items()})
        if not no_eval and ((epoch + 1) % cfg.eval.every_epochs == 0 or last):
            knn = knn_monitor(engine.module.encoder(), train_src, eval_src, cfg, device)
            if knn is not None:   # None: the rows the monitor took hold no label on one side
                metrics["knn_top1"] = knn
        metrics.update(data_metrics(decoded, loader.waited_s, rss0, device))
        history.append(metrics)
        if rank == 0:
            knn = f" knn_top1 {metrics['knn_top1']:.4f}" if "knn_top1" in metrics else ""
            say(f"[raycl] epoch {epoch + 1}/{epochs} done: loss {metrics['loss']:.4f}{knn} "
                  f"images/s {metrics['images_per_s']:.0f}")
        if pusher is not None:
            metrics["bank/pushes_skipped"] = pusher.skipped
        if (epoch + 1) % cfg.run.checkpoint_every == 0 or last or epoch + 1 == stop_at:
            save_checkpoint(engine, cfg, epoch, global_step, metrics, rank, history, resumes)
        else:
            ray.train.report(metrics)
    if pusher is not None:
        pusher.flush()
