"""``raycl bench linear``: linear evaluation's images/s against pre-training's, on the same workers,
data and batch, measured in the same call.

The linear head trains on a frozen backbone (no backward pass through it, no second view), so it
should run several times faster per image than the pre-training step it follows; both figures are
the mean over the measured epochs of ``images_per_s`` as each run reports it (step time only:
evaluation and checkpoints are outside it)."""

from __future__ import annotations

import time

from raycl import api
from raycl.config import Config, apply_overrides


def linear_vs_pretraining(cfg: Config, epochs: int = 1, address: str | None = None) -> dict:
    name = f"bench-linear-{time.strftime('%Y%m%d-%H%M%S')}"
    pre_cfg = apply_overrides(cfg.to_dict(), [f"run.epochs={epochs}", f"run.checkpoint_every={epochs}",
                                                 f"run.name={name}"])  # fmt: skip
    pre = api.train(pre_cfg, address)
    lin = api.linear(pre["checkpoint"], overrides=[f"run.epochs={epochs}", f"run.checkpoint_every={epochs}"],
                     address=address)  # fmt: skip
    pre_rate, lin_rate = mean_rate(pre["checkpoint"]), mean_rate(lin["linear_eval_checkpoint"])
    return {
        "method": cfg.method.name, "workers": cfg.distributed.workers, "batch": cfg.data.batch_size,
        "epochs": epochs, "pretraining_images_per_s": round(pre_rate, 1), "linear_images_per_s": round(lin_rate, 1),
        "linear_over_pretraining": round(lin_rate / pre_rate, 2), "linear_eval_top1": lin.get("linear_eval_top1"),
    }  # fmt: skip


def mean_rate(checkpoint: str) -> float:
    rates = [h["images_per_s"] for h in api.history(checkpoint) if "images_per_s" in h]
    return sum(rates) / len(rates)
