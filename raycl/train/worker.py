"""The function every Ray Train worker runs: build, maybe resume, train, monitor, checkpoint."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch

from raycl import collectives as dist
from raycl.config import check_paths, from_dict
from raycl.data import EpochLoader, build_sources, eval_ready, rounds
from raycl.data.decode import decode_batch
from raycl.errors import ConfigError, RayclError
from raycl.eval import extract, knn_top1
from raycl.eval.features import rows_per_forward
from raycl.train import checkpoint as ck
from raycl.train import zero_state
from raycl.train.console import FAILED, PROGRESS
from raycl.train.engine import build_engine, make_views, train_step
from raycl.train.progress import Progress, fmt_duration
from raycl.train.storage import log_dir

INIT_CHUNK = 256  # rows per forward when the bank is initialised from features (fixed: layout-independent)


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
    return {
        "data/decoded_rows": int(dist.all_reduce_sum(t).item()),
        "data/wait_s": float(waits[:, 0].max()),
        "data/peak_rss_mb": float(waits[:, 1].max()),
        "data/rss_rise_mb": float(waits[:, 2].max()),
    }


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
    except OSError:  # no procfs or not allowed: the peak stays the process's lifetime peak
        pass
    now = _proc_status_mb("VmRSS")
    return peak_rss_mb() if now is None else now


def peak_rss_mb() -> float:
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def aug_generator(seed: int, epoch: int, step: int, device) -> torch.Generator:
    """Augmentation randomness is a function of (seed, epoch, step), the same on every worker
    (``train_step`` gives each sample of the global batch its own draws): a run resumed at any step,
    on any worker count, replays the same views."""
    g = torch.Generator(device=device)
    g.manual_seed(int(np.random.SeedSequence([seed, epoch, step]).generate_state(1)[0]))
    return g


def save_checkpoint(engine, cfg, progress: dict, metrics: dict, rank: int) -> None:
    """``progress``: epoch (the last one finished), global_step, step_in_epoch (0 at an epoch's end),
    epoch_segments (the worker counts that ran the unfinished epoch), history, resumes, restarts."""
    extra = engine.module.gather_state()  # a collective when the method's state is sharded
    zero = zero_state.gather(engine) if zero_state.is_partitioned(engine) else None  # a collective
    with tempfile.TemporaryDirectory(prefix="raycl-ckpt-") as tmp:
        engine.save_checkpoint(os.path.join(tmp, ck.DS_DIR), tag=ck.DS_TAG)
        if rank == 0:
            if extra is not None:
                ck.atomic_torch_save(extra, os.path.join(tmp, ck.METHOD_STATE_FILE))
            if zero is not None:
                ck.atomic_torch_save(zero, os.path.join(tmp, ck.ZERO_STATE_FILE))
        torch.save(ck.rng_state(), os.path.join(tmp, f"rng_rank{rank}.pt"))
        if rank == 0:
            ck.write_state(
                tmp,
                {
                    **progress,
                    "config": cfg.to_dict(),
                    "signature": engine.module.signature(),
                    "metrics": metrics,
                    "world_size": dist.world_size(),
                },
            )
            torch.save(
                {"config": cfg.to_dict(), "state_dict": engine.module.state_dict()}, os.path.join(tmp, ck.MODEL_FILE)
            )
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def resume(engine, rank: int, world: int) -> dict:
    """Load the latest checkpoint Ray Train knows of, written by any worker count; return where the
    run stands (``save_checkpoint``'s ``progress``, with this restart added)."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return {
            "epoch": -1,
            "global_step": 0,
            "step_in_epoch": 0,
            "epoch_segments": [],
            "history": [],
            "resumes": [],
            "restarts": [],
        }
    with checkpoint.as_directory() as d:
        state = ck.read_state(d)
        ck.check_signature(state["signature"], engine.module.signature(), d)
        saved_world = state.get("world_size") or world
        zero_file = os.path.join(d, ck.ZERO_STATE_FILE)
        regroup = saved_world != world and zero_state.is_partitioned(engine)
        if regroup and not os.path.exists(zero_file):
            raise ck.CheckpointError(
                f"{d} was written by {saved_world} workers without {ck.ZERO_STATE_FILE} "
                f"(an older raycl); resume it with distributed.workers={saved_world}"
            )
        # DeepSpeed reads its per-rank ZeRO files only at the world size that wrote them; at another
        # the module weights and schedule come from it and the optimizer state from raycl's own file.
        engine.load_checkpoint(os.path.join(d, ck.DS_DIR), tag=ck.DS_TAG, load_optimizer_states=not regroup)
        if regroup:
            zero_state.load(engine, ck.safe_load(zero_file, "ZeRO state"), zero_file)
        method_state = os.path.join(d, ck.METHOD_STATE_FILE)
        if os.path.exists(method_state):  # the whole bank: each worker takes its shard of it
            engine.module.load_gathered_state(ck.safe_load(method_state, "method state"))
        rng_file = os.path.join(d, f"rng_rank{rank}.pt")
        if os.path.exists(rng_file):
            ck.set_rng_state(ck.safe_load(rng_file, "RNG state"))
    step_in_epoch = int(state.get("step_in_epoch", 0))
    segments = [list(s) for s in state.get("epoch_segments", [])] if step_in_epoch else []
    restart = {
        "global_step": state["global_step"],
        "epoch": state["epoch"] + 1,
        "step_in_epoch": step_in_epoch,
        "from_workers": saved_world,
        "to_workers": world,
        "cause": "restart" if saved_world == world else ("shrink" if world < saved_world else "grow"),
    }
    return {
        "epoch": state["epoch"],
        "global_step": state["global_step"],
        "step_in_epoch": step_in_epoch,
        "epoch_segments": segments + [[world, step_in_epoch]] if step_in_epoch else [],
        "history": state.get("history", []),
        "resumes": state.get("resumes", []) + [state["epoch"] + 1],
        "restarts": state.get("restarts", []) + [restart],
    }


def train_loop(config: dict) -> None:
    """Train; a raycl error is announced to the driver's console first (``FAILED``), which then shows
    it as one line instead of the traceback Ray Train and its controller print after it."""
    try:
        cfg = from_dict(config)
        check_paths_here(cfg)
        _train_loop(cfg)
    except RayclError as e:
        sys.stderr.write(FAILED + json.dumps({"error": type(e).__name__, "message": str(e)}) + "\n")
        sys.stderr.flush()
        raise


def check_paths_here(cfg) -> None:
    """The driver found the data; a worker on another node may not (a local path that is not on
    storage every node shares)."""
    try:
        check_paths(cfg)
    except ConfigError as e:
        node = ray.util.get_node_ip_address()
        raise ConfigError(
            f"{e} on the node of this worker ({node}), though the driver found it: local paths must be on "
            "storage every node mounts at the same place, or use a URL (s3://, gs://, ...)"
        ) from None


def _train_loop(cfg) -> None:
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    # DeepSpeed's ZeRO calls torch's all_gather_into_tensor, deprecated in torch 2.14 (not raycl's call)
    warnings.filterwarnings("ignore", message=r".*all_gather_into_tensor.* is deprecated", category=FutureWarning)
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
    loader = EpochLoader(
        train_src,
        d.batch_size,
        rank,
        world,
        cfg.run.seed,
        d.drop_last,
        d.shuffle_window,
        d.mix_row_groups,
        d.prefetch,
        d.decode_workers or max(1, round(cfg.distributed.cpus_per_worker)),
        encoded=d.decode == "gpu",
        pin_memory=device.type == "cuda",
        grad_accum=cfg.distributed.grad_accum,
    )
    spe = loader.steps_per_epoch
    run = cfg.at_world(world)  # same global batch and schedule; this count's share and micro-batches
    engine = build_engine(run, cfg.data.channels, spe)
    views = make_views(cfg, engine.module)
    st = resume(engine, rank, world)
    start_epoch, start_step, global_step = st["epoch"] + 1, st["step_in_epoch"], st["global_step"]
    if rank == 0 and global_step:
        say(
            f"[raycl] resumed at epoch {start_epoch + 1} step {start_step} (global step {global_step}) "
            f"on {world} workers"
            + (
                f", written by {st['restarts'][-1]['from_workers']}"
                if st["restarts"][-1]["from_workers"] != world
                else ""
            )
        )
    t0 = time.perf_counter()
    if global_step == 0 and engine.module.init_from_features(rounds(train_src, INIT_CHUNK, rank, world), device):
        if rank == 0:
            say(
                f"[raycl] bank initialised from the initial network's features of {len(train_src)} samples, "
                f"k-means over them ({time.perf_counter() - t0:.1f} s)"
            )

    pusher = None
    if cfg.method.bank_sync_steps:
        from raycl.train.bank_server import Pusher

        pusher = Pusher(cfg.run.name, cfg.method.bank_sync_steps)
    epochs, r = cfg.run.epochs, cfg.run
    curves = None
    if rank == 0 and r.loggers:
        from raycl.train.loggers import Loggers

        curves = Loggers(r.loggers, log_dir(cfg), r.name, cfg.to_dict(), global_step if st["restarts"] else None)
    progress = Progress(epochs * spe, spe, epochs, cfg.data.batch_size, global_step)
    stop_at = epochs if r.stop_after_epochs is None else min(epochs, start_epoch + r.stop_after_epochs)
    stop_step = None if r.stop_after_steps is None else global_step + r.stop_after_steps
    for epoch in range(start_epoch, stop_at):
        engine.train()
        s0 = start_step if epoch == start_epoch else 0
        segments = st["epoch_segments"] if epoch == start_epoch and s0 else [[world, 0]]
        t0, loss_sum, skipped, log_sums = time.perf_counter(), torch.zeros((), device=device), 0, {}  # type: ignore[var-annotated]
        decoded0, rss0 = train_src.decoded.rows, reset_peak_rss()
        for k, batch in enumerate(loader.batches(epoch, s0, segments)):
            step = s0 + k
            g = aug_generator(r.seed, epoch, step, device)
            images = (
                batch.images if batch.encoded is None else decode_batch(batch.encoded, d.image_size, d.channels, device)
            )
            loss, logs = train_step(
                engine, views, images, batch.index, batch.labels, run.distributed.grad_accum, g, device
            )
            loss_sum += loss
            for key, v in logs.items():
                log_sums[key] = log_sums.get(key, 0.0) + float(v)
            skipped += batch.skipped
            global_step += 1
            if pusher is not None:
                pusher.maybe_push(engine.module, global_step, logs, rank)
            if rank == 0 and ((step + 1) % r.log_every == 0 or step + 1 == spe):
                ev = progress.event(epoch, step, global_step, loss.item(), engine.get_lr()[0])
                say(PROGRESS + json.dumps(ev))
                if curves is not None:
                    curves.log({f"step/{k}": ev[k] for k in ("loss", "lr", "images_per_s")}, global_step)
            stopping = global_step == stop_step
            if step + 1 < spe and (
                stopping or (r.checkpoint_every_steps and (step + 1) % r.checkpoint_every_steps == 0)
            ):
                mid = {
                    "epoch": epoch,
                    "global_step": global_step,
                    "step_in_epoch": step + 1,
                    "workers": world,
                    "loss": float(dist.all_reduce_sum(loss_sum.clone()).item() / ((k + 1) * world)),
                }
                save_checkpoint(
                    engine,
                    cfg,
                    {
                        **st,
                        "epoch": epoch - 1,
                        "global_step": global_step,
                        "step_in_epoch": step + 1,
                        "epoch_segments": segments,
                    },
                    mid,
                    rank,
                )
            if stopping:
                break
        if global_step == stop_step and step + 1 < spe:
            break
        done = spe - s0
        epoch_time = time.perf_counter() - t0
        decoded = train_src.decoded.rows - decoded0  # before the monitor decodes its sample
        skipped_all = int(dist.all_reduce_sum(torch.tensor([skipped], device=device)).item())
        last = epoch + 1 == epochs
        metrics = {
            "epoch": epoch + 1,
            "global_step": global_step,
            "workers": world,
            "loss": float(dist.all_reduce_sum(loss_sum.clone()).item() / (done * world)),
            "lr": float(engine.get_lr()[0]),
            "images_per_s": done * cfg.data.batch_size / epoch_time,
            "epoch_time_s": epoch_time,
            "corrupt_skipped": skipped_all,
            **{f"method/{key}": v / done for key, v in log_sums.items()},
        }
        metrics.update({f"bank/{key}": v for key, v in engine.module.bank_stats().items()})
        if not no_eval and ((epoch + 1) % cfg.eval.every_epochs == 0 or last):
            knn = knn_monitor(engine.module.encoder(), train_src, eval_src, cfg, device)
            if knn is not None:  # None: the rows the monitor took hold no label on one side
                metrics["knn_top1"] = knn
        metrics.update(data_metrics(decoded, loader.waited_s, rss0, device))
        st["history"].append(metrics)
        if rank == 0:
            knn_text = f" | knn_top1 {metrics['knn_top1']:.4f}" if "knn_top1" in metrics else ""
            say(
                f"[raycl] epoch {epoch + 1}/{epochs} done | loss {metrics['loss']:.4f}{knn_text} | "
                f"{metrics['images_per_s']:.0f} images/s | data wait {metrics['data/wait_s']:.1f} s | "
                f"{fmt_duration(epoch_time)}"
            )
        if pusher is not None:
            metrics["bank/pushes_skipped"] = pusher.skipped
        if curves is not None:
            curves.log({k: v for k, v in metrics.items() if k not in ("epoch", "global_step")}, global_step)
        if (epoch + 1) % r.checkpoint_every == 0 or last or epoch + 1 == stop_at or global_step == stop_step:
            save_checkpoint(
                engine,
                cfg,
                {**st, "epoch": epoch, "global_step": global_step, "step_in_epoch": 0, "epoch_segments": []},
                metrics,
                rank,
            )
        else:
            ray.train.report(metrics)
        if global_step == stop_step:
            break
    if pusher is not None:
        pusher.flush()
    if curves is not None:
        curves.close()
