"""Every Ray Train run raycl starts goes through here: a pre-training run, a sweep's trial, the
distributed kNN and the benchmarks. ``Launch`` says what to run where; ``fit`` builds the one
TorchTrainer, runs it and turns a worker's failure into the one raycl error that caused it.

One builder keeps the runs alike: a trial of a sweep gets the same storage, checkpoint, failure and
elastic settings as a plain run of the same config (``for_run``), and every caller sees worker errors
unwrapped the same way.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
import ray.train
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from raycl.errors import RayclError
from raycl.train.storage import storage

FIGURES_FILE = "figures.json"


@dataclass(frozen=True)
class Launch:
    """One Ray Train run: the loop every worker runs, what it is given, and where it runs."""

    loop: Callable[[dict], None]
    loop_config: dict
    name: str
    storage: dict  # RunConfig storage arguments (``raycl.train.storage.storage``)
    workers: int
    min_workers: int | None = None  # set: an elastic run between min_workers and workers
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    resize_check_s: float = 60.0
    keep_checkpoints: int | None = None
    max_failures: int = 0
    callbacks: Sequence[Any] = field(default_factory=tuple)
    failure_log: str | None = None  # where the console kept the workers' tracebacks


def for_run(cfg, loop: Callable[[dict], None], name: str | None = None, callbacks: Sequence[Any] = (),
            failure_log: str | None = None) -> Launch:  # fmt: skip
    """The launch of training run ``cfg``: its workers (elastic when it has a range), storage,
    checkpoints kept and restarts allowed. Workers receive the validated config object itself."""
    d = cfg.distributed
    return Launch(
        loop=loop, loop_config={"config": cfg}, name=name or cfg.run.name, storage=storage(cfg),
        workers=d.workers, min_workers=d.min_workers, use_gpu=d.use_gpu, cpus_per_worker=d.cpus_per_worker,
        resize_check_s=d.resize_check_s, keep_checkpoints=cfg.run.keep_checkpoints,
        max_failures=cfg.run.max_failures, callbacks=tuple(callbacks), failure_log=failure_log,
    )  # fmt: skip


def trainer(launch: Launch) -> TorchTrainer:
    """The TorchTrainer of ``launch`` (the only place raycl builds one)."""
    workers = (launch.min_workers, launch.workers) if launch.min_workers else launch.workers
    return TorchTrainer(
        launch.loop,
        train_loop_config=launch.loop_config,
        # Train V2's ScalingConfig (Ray's stubs describe V1's): a (min, max) range runs elastically
        scaling_config=ScalingConfig(  # type: ignore[call-arg]
            num_workers=workers,  # type: ignore[arg-type]
            use_gpu=launch.use_gpu,
            resources_per_worker={"CPU": launch.cpus_per_worker},
            elastic_resize_monitor_interval_s=launch.resize_check_s,
        ),
        run_config=RunConfig(
            name=launch.name,
            **launch.storage,
            checkpoint_config=CheckpointConfig(num_to_keep=launch.keep_checkpoints),
            failure_config=FailureConfig(max_failures=launch.max_failures),
            callbacks=list(launch.callbacks),
        ),
    )


def fit(launch: Launch) -> ray.train.Result:
    """Run ``launch``; a worker's raycl error is raised as itself (naming the failure log, if any)."""
    try:
        return trainer(launch).fit()
    except ray.train.TrainingFailedError as e:
        err = raycl_error(e)
        if err is None:
            raise
        if launch.failure_log and os.path.exists(launch.failure_log):
            err.details = launch.failure_log
        raise err from None


def raycl_error(e: BaseException | None) -> RayclError | None:
    """The raycl error behind ``e`` (a worker group's failure, a Tune trial's error), else None.
    Ray re-raises a task's error as a class that is both: ``RayTaskError(DataError)``, whose ``cause``
    is the error as raised, with its own one-line message."""
    failures = getattr(e, "worker_failures", None) or {}
    for exc in [e, *failures.values(), getattr(e, "controller_failure", None)]:
        seen = 0
        while exc is not None and seen < 10:
            if isinstance(exc, RayclError):
                cause = getattr(exc, "cause", None)
                return cause if isinstance(cause, RayclError) else exc
            exc = getattr(exc, "cause", None) or exc.__cause__
            seen += 1
    return None


def report_figures(figures: dict) -> None:
    """A worker's figures (a benchmark's, the kNN's) as the run's result: Ray Train V2 keeps the
    metrics of reports that carry a checkpoint, so rank 0 attaches one holding them."""
    with tempfile.TemporaryDirectory(prefix="raycl-figures-") as folder:
        checkpoint = None
        if ray.train.get_context().get_world_rank() == 0:
            with open(os.path.join(folder, FIGURES_FILE), "w") as fh:
                json.dump(figures, fh)
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report({k: v for k, v in figures.items() if isinstance(v, (int, float))}, checkpoint=checkpoint)


def read_figures(result: ray.train.Result) -> dict:
    """What ``report_figures`` reported."""
    if result.checkpoint is None:
        raise RayclError("the run ended without reporting its figures")
    with result.checkpoint.as_directory() as folder, open(os.path.join(folder, FIGURES_FILE)) as fh:
        return json.load(fh)
