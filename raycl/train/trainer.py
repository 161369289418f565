"""The driver side of a training run: start or join Ray, check the run before any worker starts
(resources, the checkpoint it resumes from, the BankServer it needs), then launch it
(``raycl.train.launch``)."""

from __future__ import annotations

import contextlib
import logging
import math
import os

import ray

from raycl.collectives import free_port
from raycl.errors import CheckpointError, ConfigError
from raycl.log import get as get_logger
from raycl.methods import build_method
from raycl.train import bank_server, console, launch, loggers, zero_state
from raycl.train import checkpoint as ck
from raycl.train.storage import log_dir, run_dir, storage
from raycl.train.worker import train_loop

log = get_logger(__name__)


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join ``address`` (or $RAY_ADDRESS), else start a local instance sized for this machine.
    Returns True when this call started Ray (the caller then shuts it down)."""
    if ray.is_initialized():
        return False
    console.quiet_driver_logs()
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # Train V2's controller polls its workers every 2 s, so a run ends 2-4 s after its last step;
        # a tiny fit took 16.8 s, 12 s at 0.25 s. The raylet and its actors inherit this.
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
        ray.init(**local_ray_options(num_cpus or os.cpu_count()))
    console.drop_forwarded_noise()
    return True


def local_ray_options(num_cpus: int | None, env_vars: dict | None = None) -> dict:
    """``ray.init`` arguments for a local instance whose workers can find their own State API.

    Ray Train's PlacementGroupCleaner (a detached actor) frees a worker group's CPUs when its
    controller dies, which is how every Tune trial ends (ASHA stops it, even at max_t). It finds
    the State API with address "auto", which fails with "Found multiple active Ray instances" when
    another Ray runs on the machine; the worker group then keeps its CPUs and the next trial waits
    forever. Naming the dashboard (the State API server) in every worker's environment avoids that.
    """

    port = free_port()
    env = {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}", **(env_vars or {})}
    return {
        "num_cpus": num_cpus,
        "dashboard_host": "127.0.0.1",
        "dashboard_port": port,
        "logging_level": logging.WARNING,
        "runtime_env": {"env_vars": env},
    }


def latest_local_checkpoint(cfg) -> str | None:
    d = run_dir(cfg)
    return None if d is None else ck.latest_checkpoint(d)


def check_resume(cfg) -> str | None:
    """Before any worker starts: a run directory's checkpoint must fit this run's method and model."""
    latest = latest_local_checkpoint(cfg)
    if latest is None:
        return None

    state = ck.read_state(latest)
    method = build_method(cfg, cfg.data.channels)
    ck.check_signature(state["signature"], method.signature(), latest)
    saved_world, stage = state.get("world_size"), state["config"]["distributed"]["zero_stage"]
    if saved_world and stage != cfg.distributed.zero_stage:
        raise CheckpointError(
            f"{latest} was written with distributed.zero_stage={stage}; this run asks for "
            f"{cfg.distributed.zero_stage} (the optimizer state is laid out per stage)"
        )
    if (
        saved_world
        and saved_world not in cfg.worker_counts()
        and stage > 0
        and not os.path.exists(os.path.join(latest, ck.ZERO_STATE_FILE))
    ):
        raise CheckpointError(
            f"{latest} was written by {saved_world} workers with ZeRO stage {stage} by a raycl without "
            f"{ck.ZERO_STATE_FILE}, which DeepSpeed cannot re-partition; "
            f"resume it with distributed.workers={saved_world}"
        )
    zero_file = os.path.join(latest, ck.ZERO_STATE_FILE)
    if saved_world and stage > 0 and list(cfg.worker_counts()) != [saved_world] and os.path.exists(zero_file):
        # read here, never written: a run that cannot use it stops before any worker starts
        zero_state.check(
            ck.safe_load(zero_file, "ZeRO state"),
            sum(p.numel() for p in method.parameters() if p.requires_grad),
            zero_file,
        )
    return latest


def worker_slots(cpus_per_worker: float) -> tuple[int, list[float]]:
    """(workers of ``cpus_per_worker`` CPUs the live nodes can hold, each node's CPUs): a worker lives
    on one node, so 4 x 1.5 CPUs do not fit two 3-CPU nodes."""
    nodes = [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")]
    return sum(int(c // cpus_per_worker) for c in nodes), nodes


def check_resources(cfg) -> None:
    d = cfg.distributed
    avail = ray.cluster_resources()
    least = d.min_workers or d.workers  # an elastic run starts once its minimum fits
    need_cpu = least * d.cpus_per_worker
    if need_cpu > avail.get("CPU", 0):
        raise ConfigError(
            f"distributed.workers x distributed.cpus_per_worker = {need_cpu:g} CPUs, "
            f"but the Ray cluster has {avail.get('CPU', 0):g}; lower one of them"
        )
    slots, nodes = worker_slots(d.cpus_per_worker)
    if slots < least:
        raise ConfigError(
            f"distributed.cpus_per_worker: {d.cpus_per_worker:g} CPUs per worker fit {slots} workers on "
            f"nodes of {', '.join(f'{c:g}' for c in nodes)} CPUs, not distributed.workers={least}"
        )
    if d.use_gpu and least > avail.get("GPU", 0):
        raise ConfigError(
            f"distributed.use_gpu: {least} workers need {least} GPUs, the Ray cluster has {avail.get('GPU', 0):g}"
        )


def fit(cfg, address: str | None = None):
    """Run ``cfg`` on Ray Train; returns the ray.train.Result."""
    d = cfg.distributed
    # A local instance gets at least the CPUs the run asks for: a laptop oversubscribes its cores
    # rather than waiting forever for resources that will never appear.
    owned = init_ray(address, num_cpus=max(os.cpu_count() or 1, math.ceil(d.workers * d.cpus_per_worker)))
    failure_log = os.path.join(log_dir(cfg), "failure.log")
    with contextlib.suppress(FileNotFoundError):
        os.remove(failure_log)  # an earlier attempt's; this one writes its own
    # Attached until Ray is shut down: worker lines still in flight when fit() returns go through it too.
    with console.attached(failure_log=failure_log):
        try:
            return _fit(cfg, failure_log)
        finally:
            if owned:
                ray.shutdown()  # flushes worker logs before the caller prints its result


def _fit(cfg, failure_log):
    loggers.check(cfg.run.loggers)
    check_resources(cfg)
    resumed_from = check_resume(cfg)
    if resumed_from:
        log.info(f"run {cfg.run.name!r} has a checkpoint at {resumed_from}: resuming")
    start_bank_server(cfg)
    return launch.fit(launch.for_run(cfg, train_loop, failure_log=failure_log))


def start_bank_server(cfg) -> None:
    """The run's BankServer, for a method that pushes per-sample state to one (a plain run and a
    sweep's trial alike); its snapshots go beside the run on local storage, else to the head."""
    if not cfg.method.bank_sync_steps:
        return
    st = storage(cfg)
    local = "storage_filesystem" not in st and "://" not in st["storage_path"]
    root = st["storage_path"] if local else os.path.expanduser("~/.raycl/bank_server")
    bank_server.start(cfg.run.name, os.path.join(root, cfg.run.name, "bank_server"))
