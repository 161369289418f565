"""One worker's model, optimizer and DeepSpeed engine, and the step they take together."""

from __future__ import annotations

import contextlib
import logging
import os
import sys

import numpy as np
import torch

from raycl import collectives as dist
from raycl.collectives.batchnorm import convert_global_batchnorm
from raycl.data.draws import SampleStream
from raycl.data.views import views_for
from raycl.methods import MethodBatch, build_method
from raycl.optim import LARS, build_optimizer, build_schedule
from raycl.world import WorldPlan


def deepspeed_config(cfg, plan: WorldPlan) -> dict:
    d = cfg.distributed
    return {
        "train_batch_size": plan.batch,
        "train_micro_batch_size_per_gpu": plan.micro_batch,
        "gradient_accumulation_steps": plan.grad_accum,
        "zero_optimization": {"stage": d.zero_stage},
        # raycl's optimizers are plain torch optimizers handed to DeepSpeed.
        "zero_allow_untested_optimizer": True,
        # DeepSpeed 0.19 clips the global gradient norm at 1.0 unless told otherwise; none of the
        # papers clip, and at init InterCLR's norm is ~8, so clipping makes every step silently ~8x smaller.
        "gradient_clipping": cfg.optim.grad_clip or 0.0,
        "bf16": {"enabled": d.precision == "bf16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def build_engine(cfg, channels: int, steps_per_epoch: int, plan: WorldPlan | None = None):
    """Method + optimizer + warm-up/cosine schedule, wrapped in a DeepSpeed engine that splits the
    global batch as ``plan`` says (default: ``cfg.plan()``, at distributed.workers).

    deepspeed is imported here, not at module level: importing it on the CPU-only Train
    controller fails (ray#50406)."""
    deepspeed = import_deepspeed()
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    torch.manual_seed(cfg.run.seed)  # identical initial weights on every rank (DeepSpeed also broadcasts)
    method: torch.nn.Module = build_method(cfg, channels)
    if cfg.model.sync_bn:
        # torch's SyncBatchNorm is GPU-only; the global BN runs everywhere.
        if cfg.distributed.use_gpu:
            method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
        else:
            method = convert_global_batchnorm(method)
    optimizer = build_optimizer(method, cfg.optim, cfg.lr)
    schedule = build_schedule(optimizer, cfg.optim, steps_per_epoch, cfg.run.epochs, cfg.lr)
    engine, _, _, _ = deepspeed.initialize(
        model=method, optimizer=optimizer, lr_scheduler=schedule, config=deepspeed_config(cfg, plan or cfg.plan())
    )
    attach_lars(engine, optimizer)
    return engine


def import_deepspeed():
    """DeepSpeed, imported without three costs of features raycl never uses: its CPU shared-memory
    all-reduce is not built (``skip_shm_all_reduce_build``), and ~3 s of every worker's start on 2 cores
    are saved: its autotuner imports mlflow whenever it is installed (raycl's mlflow extra, the test
    extra; 1.2 s), and ZeRO's first optimizer check imports its Muon optimizer, whose ``torch.compile``
    decorators load torch's inductor (1.9 s). mlflow is hidden from that one import (raycl's own mlflow
    logger imports it as usual afterwards); Muon is imported with TorchDynamo off, so its functions stay
    plain Python, and ``torch.compile`` elsewhere works as before."""
    with hidden_module("mlflow"):
        import deepspeed
    with env_set("TORCHDYNAMO_DISABLE", "1"):
        try:
            import deepspeed.runtime.zero.muon.muon_optimizer  # noqa: F401
        except ImportError:  # a DeepSpeed without Muon
            pass
    skip_shm_all_reduce_build()
    return deepspeed


@contextlib.contextmanager
def hidden_module(name: str):
    """``import name`` fails inside the block (as if it were not installed) unless already imported."""
    hidden = name not in sys.modules
    if hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # Python: "import halted"
    try:
        yield
    finally:
        if hidden and sys.modules.get(name, 0) is None:
            del sys.modules[name]


@contextlib.contextmanager
def env_set(name: str, value: str):
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def skip_shm_all_reduce_build() -> None:
    """On CPU, DeepSpeed's communication backend compiles a shared-memory all-reduce the first time a
    machine (or virtual environment) starts an engine: 24 s of silent C++ on 2 cores, in a new user's
    first run and in every clean CI run. It serves ``inference_all_reduce`` only, which training never
    calls. DeepSpeed skips an op its compatibility table marks unavailable (a module dict that keeps
    edits); on GPU the op does not exist and this changes nothing."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def attach_lars(engine, optimizer) -> None:
    """Give LARS the layer boundaries inside ZeRO's flat partitions (see raycl.optim.lars)."""

    if not isinstance(optimizer, LARS) or engine.optimizer is optimizer:
        return
    if not hasattr(engine.optimizer, "single_partition_of_fp32_groups"):
        raise RuntimeError(
            f"LARS cannot see layers through {type(engine.optimizer).__name__}; "
            "use distributed.zero_stage 1 or 2, or 0 in fp32"
        )
    optimizer.attach_zero(engine.optimizer)


def make_views(cfg, method):
    """The views a method asks for (see ``raycl.data.views.views_for``), NHWC when ``distributed.channels_last``.

    channels_last goes on the inputs, never the parameters: DeepSpeed's ZeRO keeps each parameter
    as a view into its flat buffers, and ``model.to(memory_format=channels_last)`` after
    ``initialize`` re-allocates them (ZeRO-2 then steps buffers the model no longer reads), while
    converting before ``initialize`` fails. A channels_last input is enough for cuDNN to choose NHWC
    kernels; the outputs and gradients follow it."""
    views = views_for(cfg, method)
    if not cfg.distributed.channels_last:
        return views
    return lambda images, g: [v.contiguous(memory_format=torch.channels_last) for v in views(images, g)]


def train_step(
    engine,
    views_fn,
    images: np.ndarray,
    index: np.ndarray,
    labels: np.ndarray,
    grad_accum: int,
    g: torch.Generator,
    device,
) -> tuple[torch.Tensor, dict]:
    """One optimizer step over this worker's share of the global batch, in ``grad_accum``
    micro-batches (DeepSpeed scales each backward by 1/grad_accum and steps on the last). ``g``
    must be seeded the same on every worker: views are drawn per sample of the global micro-batch.
    Returns the mean loss as a tensor (no host sync) and the method's logs of the last micro-batch."""
    mb = len(images) // grad_accum
    total = torch.zeros((), device=device)
    # g is seeded alike on every worker; each draws for the whole micro-batch and keeps its rows
    stream = SampleStream(g, mb * dist.world_size(), mb * dist.rank())
    for m in range(grad_accum):
        sl = slice(m * mb, (m + 1) * mb)
        x = torch.as_tensor(images[sl]).to(device, non_blocking=True)  # ndarray, pinned or device tensor
        batch = MethodBatch(
            views_fn(x, stream), torch.from_numpy(index[sl]).to(device), torch.from_numpy(labels[sl]).to(device)
        )
        loss, logs = engine(batch)
        engine.backward(loss)
        engine.step()
        total += loss.detach()
    return total / grad_accum, logs
