"""What every Ray Train worker runs: ``train_loop`` builds a ``WorkerRun`` (data, engine, views,
the state it resumes from) and trains it epoch by epoch, monitoring and checkpointing."""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch

from raycl import collectives as dist
from raycl.config import Config
from raycl.data import EpochLoader, bank_rows, build_sources, eval_ready, eval_rounds
from raycl.data.decode import decode_batch
from raycl.errors import ConfigError, DataError, RayclError
from raycl.eval import extract, knn_top1
from raycl.eval.features import rows_per_forward
from raycl.log import get as get_logger
from raycl.progress import Progress, fmt_duration
from raycl.train.console import FAILED, PROGRESS
from raycl.train.engine import build_engine, make_views, train_step
from raycl.train.rss import peak_rss_mb, reset_peak_rss
from raycl.train.run_state import resume, save_checkpoint
from raycl.train.storage import log_dir
from raycl.world import WorldPlan

log = get_logger(__name__)
INIT_CHUNK = 256  # rows per forward when the bank is initialised from features (fixed: layout-independent)


def say(line: str) -> None:
    """A progress event, written to stdout directly (Ray Train's patched print would log the line a
    second time); raycl's notes go through ``log``."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def knn_monitor(backbone, train_src, eval_src, cfg, device) -> float | None:
    """kNN top-1 on the held-out split's labeled rows; feature extraction is split across the workers."""
    r, w = dist.rank(), dist.world_size()
    e, seed, bs = cfg.eval, cfg.run.seed, rows_per_forward(cfg.data.channels, cfg.data.image_size)
    bank, bank_y = extract(backbone, bank_rows(train_src, eval_src), (r, w), bs, device, e.max_train_samples, seed)
    test, test_y = extract(backbone, eval_src, (r, w), bs, device, e.max_eval_samples, seed)
    bank, bank_y = dist.all_gather_nograd(bank.to(device)), dist.all_gather_nograd(bank_y.to(device))
    test, test_y = dist.all_gather_nograd(test.to(device)), dist.all_gather_nograd(test_y.to(device))
    return knn_top1(bank, bank_y, test, test_y, cfg.eval.knn_k, cfg.eval.knn_temperature)


def classifier_monitor(scores, eval_src, cfg, device, metric: str) -> dict:
    """Top-1 and top-5 of ``scores`` (images -> class scores) over every labeled held-out row, each
    worker scoring its share: ``<metric>_top1``, ``<metric>_top5``."""
    batch = rows_per_forward(cfg.data.channels, cfg.data.image_size)
    logits, labels = extract(scores, eval_src, (dist.rank(), dist.world_size()), batch, device)
    logits, labels = logits[labels >= 0].to(device), labels[labels >= 0].to(device)
    ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices if len(logits) else labels[:, None]
    hits = torch.stack([(ranked[:, :1] == labels[:, None]).any(1).sum(), (ranked == labels[:, None]).any(1).sum()])
    counts = dist.all_reduce_sum(torch.cat([hits.float(), torch.tensor([float(len(labels))], device=device)]))
    rows = max(float(counts[2]), 1.0)
    return {f"{metric}_top1": float(counts[0]) / rows, f"{metric}_top5": float(counts[1]) / rows}


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


def aug_generator(seed: int, epoch: int, step: int, device) -> torch.Generator:
    """Augmentation randomness is a function of (seed, epoch, step), the same on every worker
    (``train_step`` gives each sample of the global batch its own draws): a run resumed at any step,
    on any worker count, replays the same views."""
    g = torch.Generator(device=device)
    g.manual_seed(int(np.random.SeedSequence([seed, epoch, step]).generate_state(1)[0]))
    return g


def build_loader(cfg: Config, plan: WorldPlan, source, rank: int, device) -> EpochLoader:
    d = cfg.data
    return EpochLoader(
        source, plan.batch, rank, plan.workers, cfg.run.seed, d.drop_last, d.shuffle_window, d.mix_row_groups,
        d.prefetch, d.decode_workers or max(1, round(cfg.distributed.cpus_per_worker)),
        encoded=d.decode == "gpu", pin_memory=device.type == "cuda", grad_accum=plan.grad_accum,
    )  # fmt: skip


@dataclass
class EpochTally:
    """What one worker adds up over the steps it runs of an epoch."""

    first_step: int  # where this invocation entered the epoch (a resumed run: mid-epoch)
    segments: list[list[int]]  # [workers, first step] of each stretch of the epoch, for re-dealing rows
    loss_sum: torch.Tensor
    decoded_before: int
    rss_before: float
    steps: int = 0
    skipped: int = 0
    method_logs: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    stopped_mid_epoch: bool = False

    def add(self, loss: torch.Tensor, logs: dict, skipped: int) -> None:
        self.loss_sum += loss
        for key, value in logs.items():
            self.method_logs[key] = self.method_logs.get(key, 0.0) + float(value)
        self.skipped += skipped
        self.steps += 1

    def mean_loss(self, world: int) -> float:
        return float(dist.all_reduce_sum(self.loss_sum.clone()).item() / (self.steps * world))


class WorkerRun:
    """One worker's share of a run: what it built, where the run stands (``state``), and the loop."""

    def __init__(self, cfg: Config):
        ctx = ray.train.get_context()
        self.cfg, self.rank, self.world = cfg, ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self.train_src, self.eval_src = sources_here(cfg)
        self.no_eval = eval_ready(self.train_src, self.eval_src)  # why the kNN monitor cannot run, or None
        if self.no_eval:
            self.tell(self.no_eval)
        self.plan = cfg.plan(self.world)  # this worker count's share of the global batch (elastic: any count)
        self.loader = build_loader(cfg, self.plan, self.train_src, self.rank, self.device)
        self.steps_per_epoch = self.loader.steps_per_epoch
        self.engine = build_engine(cfg, cfg.data.channels, self.steps_per_epoch, self.plan)
        self.views = make_views(cfg, self.engine.module)
        self.state = resume(self.engine, self.rank, self.world)
        self.tell_resumed()
        self.init_per_sample_state()
        self.pusher = self.bank_pusher()
        self.loggers = self.open_loggers()
        run = cfg.run
        self.progress = Progress(run.epochs * self.steps_per_epoch, self.steps_per_epoch, run.epochs,
                                 cfg.data.batch_size, self.state.global_step)  # fmt: skip
        first = self.state.epoch + 1
        self.stop_epoch = (
            run.epochs if run.stop_after_epochs is None else min(run.epochs, first + run.stop_after_epochs)
        )
        self.stop_step = None if run.stop_after_steps is None else self.state.global_step + run.stop_after_steps

    # -- set-up ----------------------------------------------------------------------------------
    def tell(self, line: str) -> None:
        if self.rank == 0:
            log.info(line)

    def tell_resumed(self) -> None:
        state = self.state
        if not state.global_step:
            return
        written_by = state.restarts[-1]["from_workers"]
        self.tell(
            f"resumed at epoch {state.epoch + 2} step {state.step_in_epoch} (global step {state.global_step}) "
            f"on {self.world} workers" + (f", written by {written_by}" if written_by != self.world else "")
        )

    def init_per_sample_state(self) -> None:
        started = time.perf_counter()
        chunks = eval_rounds(self.train_src, INIT_CHUNK, self.rank, self.world, self.device)
        if self.state.global_step == 0 and self.engine.module.init_from_features(chunks):
            self.tell(
                f"bank initialised from the initial network's features of {len(self.train_src)} samples, "
                f"k-means over them ({time.perf_counter() - started:.1f} s)"
            )

    def bank_pusher(self):
        if not self.cfg.method.bank_sync_steps:
            return None
        from raycl.train.bank_server import Pusher  # Ray actors: only for runs that serve a bank

        return Pusher(self.cfg.run.name, self.cfg.method.bank_sync_steps)

    def open_loggers(self):
        run = self.cfg.run
        if self.rank != 0 or not run.loggers:
            return None
        from raycl.train.loggers import Loggers  # TensorBoard/MLflow/W&B: imported only where they log

        resumed_at = self.state.global_step if self.state.restarts else None
        return Loggers(run.loggers, log_dir(self.cfg), run.name, self.cfg.to_dict(), resumed_at)

    # -- the loop -----------------------------------------------------------------------------------
    def train(self) -> None:
        first_epoch = self.state.epoch + 1
        for epoch in range(first_epoch, self.stop_epoch):
            tally = self.train_epoch(epoch, self.state.step_in_epoch if epoch == first_epoch else 0)
            if tally.stopped_mid_epoch:
                break
            self.end_epoch(epoch, tally)
            if self.state.global_step == self.stop_step:
                break
        if self.pusher is not None:
            self.pusher.flush()
        if self.loggers is not None:
            self.loggers.close()

    def train_epoch(self, epoch: int, first_step: int) -> EpochTally:
        self.engine.train()
        segments = self.state.epoch_segments if first_step else [[self.world, 0]]
        tally = EpochTally(first_step, segments, torch.zeros((), device=self.device),
                           self.train_src.decoded.rows, reset_peak_rss())  # fmt: skip
        for step, batch in enumerate(self.loader.batches(epoch, first_step, segments), start=first_step):
            self.train_one_step(epoch, step, batch, tally)
            stopping = self.state.global_step == self.stop_step
            every = self.cfg.run.checkpoint_every_steps
            if step + 1 < self.steps_per_epoch and (stopping or (every and (step + 1) % every == 0)):
                self.checkpoint_mid_epoch(epoch, step, tally)
            if stopping:
                tally.stopped_mid_epoch = step + 1 < self.steps_per_epoch
                break
        return tally

    def train_one_step(self, epoch: int, step: int, batch, tally: EpochTally) -> None:
        cfg, data = self.cfg, self.cfg.data
        generator = aug_generator(cfg.run.seed, epoch, step, self.device)
        images = batch.images
        if batch.encoded is not None:
            images = decode_batch(batch.encoded, data.image_size, data.channels, self.device)
        loss, logs = train_step(self.engine, self.views, images, batch.index, batch.labels,
                                self.plan.grad_accum, generator, self.device)  # fmt: skip
        tally.add(loss, logs, batch.skipped)
        self.state.global_step += 1
        if self.pusher is not None:
            self.pusher.maybe_push(self.engine.module, self.state.global_step, logs, self.rank)
        if self.rank == 0 and ((step + 1) % cfg.run.log_every == 0 or step + 1 == self.steps_per_epoch):
            self.report_progress(epoch, step, loss)

    def report_progress(self, epoch: int, step: int, loss: torch.Tensor) -> None:
        event = self.progress.event(epoch, step, self.state.global_step, loss.item(), self.engine.get_lr()[0])
        say(PROGRESS + json.dumps(event))
        if self.loggers is not None:
            self.loggers.log({f"step/{k}": event[k] for k in ("loss", "lr", "images_per_s")}, self.state.global_step)

    def checkpoint_mid_epoch(self, epoch: int, step: int, tally: EpochTally) -> None:
        state = self.state.at(epoch=epoch - 1, step_in_epoch=step + 1, epoch_segments=tally.segments)
        metrics = {"epoch": epoch, "global_step": state.global_step, "step_in_epoch": step + 1,
                   "workers": self.world, "loss": tally.mean_loss(self.world)}  # fmt: skip
        save_checkpoint(self.engine, self.cfg, state, metrics, self.rank)

    def end_epoch(self, epoch: int, tally: EpochTally) -> None:
        metrics = self.epoch_metrics(epoch, tally)
        self.state.history.append(metrics)
        self.state = self.state.at(epoch=epoch, step_in_epoch=0, epoch_segments=[])
        knn_text = f" | knn_top1 {metrics['knn_top1']:.4f}" if "knn_top1" in metrics else ""
        self.tell(
            f"epoch {epoch + 1}/{self.cfg.run.epochs} done | loss {metrics['loss']:.4f}{knn_text} | "
            f"{metrics['images_per_s']:.0f} images/s | data wait {metrics['data/wait_s']:.1f} s | "
            f"{fmt_duration(metrics['epoch_time_s'])}"
        )
        if self.pusher is not None:
            metrics["bank/pushes_skipped"] = self.pusher.skipped
        if self.loggers is not None:
            self.loggers.log({k: v for k, v in metrics.items() if k not in ("epoch", "global_step")},
                             self.state.global_step)  # fmt: skip
        run = self.cfg.run
        due = (epoch + 1) % run.checkpoint_every == 0 or epoch + 1 in (run.epochs, self.stop_epoch)
        if due or self.state.global_step == self.stop_step:
            save_checkpoint(self.engine, self.cfg, self.state, metrics, self.rank)
        else:
            ray.train.report(metrics)

    def epoch_metrics(self, epoch: int, tally: EpochTally) -> dict:
        done, cfg, device = self.steps_per_epoch - tally.first_step, self.cfg, self.device
        epoch_time = time.perf_counter() - tally.started
        decoded = self.train_src.decoded.rows - tally.decoded_before  # before the monitor decodes its sample
        skipped = int(dist.all_reduce_sum(torch.tensor([tally.skipped], device=device)).item())
        metrics = {
            "epoch": epoch + 1, "global_step": self.state.global_step, "workers": self.world,
            "loss": tally.mean_loss(self.world), "lr": float(self.engine.get_lr()[0]),
            "images_per_s": done * cfg.data.batch_size / epoch_time, "epoch_time_s": epoch_time,
            "corrupt_skipped": skipped, **{f"method/{key}": v / done for key, v in tally.method_logs.items()},
        }  # fmt: skip
        metrics.update({f"bank/{key}": v for key, v in self.engine.module.bank_stats().items()})
        if not self.no_eval and ((epoch + 1) % cfg.eval.every_epochs == 0 or epoch + 1 == cfg.run.epochs):
            # Each worker's BatchNorm statistics drift apart (they see other batches); the checkpoint keeps
            # rank 0's, so every worker's share of the monitor is scored with those (as `raycl eval` would).
            dist.broadcast_buffers(self.engine.module.encoder())
            scores = self.engine.module.held_out_scores()
            if scores is not None:  # a classifier under evaluation: its own top-1 and top-5
                metric = self.engine.module.held_out_metric
                metrics.update(classifier_monitor(scores, self.eval_src, cfg, device, metric))
            else:
                knn = knn_monitor(self.engine.module.encoder(), self.train_src, self.eval_src, cfg, device)
                if knn is not None:  # None: the rows the monitor took hold no label on one side
                    metrics["knn_top1"] = knn
        metrics.update(data_metrics(decoded, self.loader.waited_s, tally.rss_before, device))
        return metrics


def announcing_errors(loop):
    """``loop`` (a Ray Train worker function) whose raycl errors are announced to the driver's console
    first (``FAILED``), which then shows each as one line instead of the tracebacks Ray Train and its
    controller print after it."""

    @functools.wraps(loop)
    def run(config: dict) -> None:
        try:
            loop(config)
        except RayclError as e:
            sys.stderr.write(FAILED + json.dumps({"error": type(e).__name__, "message": str(e)}) + "\n")
            sys.stderr.flush()
            raise

    return run


@announcing_errors
def train_loop(config: dict) -> None:
    """Train the run ``config["config"]`` on this worker: the driver's validated, resolved Config
    itself, never validated again here."""
    cfg = config["config"]
    if not isinstance(cfg, Config):
        raise TypeError(f"train_loop: expected the driver's raycl Config, got {type(cfg).__name__}")
    quiet_libraries()
    if cfg.distributed.torch_threads:
        torch.set_num_threads(cfg.distributed.torch_threads)
    WorkerRun(cfg).train()


def sources_here(cfg: Config):
    """The run's sources as this worker reads them. The driver read them before any worker started,
    so a failure here is this node's: a local path that is not on storage every node shares."""
    try:
        return build_sources(cfg)
    except (ConfigError, DataError) as e:
        node = ray.util.get_node_ip_address()
        raise type(e)(
            f"{e} on the node of this worker ({node}), though the driver read it: local paths must be on "
            "storage every node mounts at the same place, or use a URL (s3://, gs://, ...)"
        ) from None


def quiet_libraries() -> None:
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    # DeepSpeed's ZeRO calls torch's all_gather_into_tensor, deprecated in torch 2.14 (not raycl's call)
    warnings.filterwarnings("ignore", message=r".*all_gather_into_tensor.* is deprecated", category=FutureWarning)
