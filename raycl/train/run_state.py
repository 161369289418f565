"""Where a run stands, and how a worker saves it to a checkpoint and resumes from one.

``RunState`` is what ``raycl_state.json`` holds beside the weights: the last finished epoch, the
global step, the step reached inside an unfinished epoch and the worker counts that ran it (so its
remaining rows can be re-dealt), the per-epoch history, and every resume and restart."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass, field

import ray.train
import torch

from raycl import collectives as dist
from raycl.train import checkpoint as ck
from raycl.train import zero_state


@dataclass
class RunState:
    epoch: int = -1  # the last epoch finished (-1: none)
    global_step: int = 0
    step_in_epoch: int = 0  # steps done in the epoch after ``epoch`` (0 at an epoch's end)
    epoch_segments: list[list[int]] = field(default_factory=list)  # [workers, first step] that ran it
    history: list[dict] = field(default_factory=list)  # each finished epoch's metrics
    resumes: list[int] = field(default_factory=list)  # the epochs a resumed run started from
    restarts: list[dict] = field(default_factory=list)  # global_step, epoch, ..., cause

    def at(self, **changes) -> RunState:
        return dataclasses.replace(self, **changes)

    @classmethod
    def resumed(cls, saved: dict, world: int) -> RunState:
        """The state a checkpoint's ``raycl_state.json`` holds, continued on ``world`` workers."""
        saved_world = saved.get("world_size") or world
        step_in_epoch = int(saved.get("step_in_epoch", 0))
        segments = [list(s) for s in saved.get("epoch_segments", [])] if step_in_epoch else []
        restart = {
            "global_step": saved["global_step"],
            "epoch": saved["epoch"] + 1,
            "step_in_epoch": step_in_epoch,
            "from_workers": saved_world,
            "to_workers": world,
            "cause": "restart" if saved_world == world else ("shrink" if world < saved_world else "grow"),
        }
        return cls(
            epoch=saved["epoch"],
            global_step=saved["global_step"],
            step_in_epoch=step_in_epoch,
            epoch_segments=segments + [[world, step_in_epoch]] if step_in_epoch else [],
            history=saved.get("history", []),
            resumes=saved.get("resumes", []) + [saved["epoch"] + 1],
            restarts=saved.get("restarts", []) + [restart],
        )


def save_checkpoint(engine, cfg, state: RunState, metrics: dict, rank: int) -> None:
    """Every worker writes its part (DeepSpeed's files, its RNG state); rank 0 the rest; Ray Train
    registers the folder with ``metrics``. Collectives inside: every worker calls it at the same step."""
    extra = engine.module.gather_state()  # a collective when the method's state is sharded
    zero = zero_state.gather(engine) if zero_state.is_partitioned(engine) else None  # a collective
    with tempfile.TemporaryDirectory(prefix="raycl-ckpt-") as tmp:
        engine.save_checkpoint(os.path.join(tmp, ck.DS_DIR), tag=ck.DS_TAG)
        torch.save(ck.rng_state(), os.path.join(tmp, f"rng_rank{rank}.pt"))
        if rank == 0:
            if extra is not None:
                ck.atomic_torch_save(extra, os.path.join(tmp, ck.METHOD_STATE_FILE))
            if zero is not None:
                ck.atomic_torch_save(zero, os.path.join(tmp, ck.ZERO_STATE_FILE))
            ck.write_state(tmp, {
                **dataclasses.asdict(state), "config": cfg.to_dict(), "signature": engine.module.signature(),
                "metrics": metrics, "world_size": dist.world_size(),
            })  # fmt: skip
            model = {"config": cfg.to_dict(), "state_dict": engine.module.state_dict()}
            torch.save(model, os.path.join(tmp, ck.MODEL_FILE))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def resume(engine, rank: int, world: int) -> RunState:
    """Load the latest checkpoint Ray Train knows of, written by any worker count, into ``engine``;
    return where the run stands (a fresh state when there is none)."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return RunState()
    with checkpoint.as_directory() as folder:
        saved = ck.read_state(folder)
        ck.check_signature(saved["signature"], engine.module.signature(), folder)
        _load_into(engine, folder, rank, saved_world=saved.get("world_size") or world, world=world)
    return RunState.resumed(saved, world)


def _load_into(engine, folder: str, rank: int, saved_world: int, world: int) -> None:
    zero_file = os.path.join(folder, ck.ZERO_STATE_FILE)
    regroup = saved_world != world and zero_state.is_partitioned(engine)
    if regroup and not os.path.exists(zero_file):
        raise ck.CheckpointError(
            f"{folder} was written by {saved_world} workers without {ck.ZERO_STATE_FILE} "
            f"(an older raycl); resume it with distributed.workers={saved_world}"
        )
    # DeepSpeed reads its per-rank ZeRO files only at the world size that wrote them; at another
    # the module weights and schedule come from it and the optimizer state from raycl's own file.
    engine.load_checkpoint(os.path.join(folder, ck.DS_DIR), tag=ck.DS_TAG, load_optimizer_states=not regroup)
    if regroup:
        zero_state.load(engine, ck.safe_load(zero_file, "ZeRO state"), zero_file)
    method_state = os.path.join(folder, ck.METHOD_STATE_FILE)
    if os.path.exists(method_state):  # the whole bank: each worker takes its shard of it
        engine.module.load_gathered_state(ck.safe_load(method_state, "method state"))
    rng_file = os.path.join(folder, f"rng_rank{rank}.pt")
    if os.path.exists(rng_file):
        ck.set_rng_state(ck.safe_load(rng_file, "RNG state"))
