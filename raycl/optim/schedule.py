"""Learning-rate schedules as multipliers of the peak lr (for ``torch.optim.lr_scheduler.LambdaLR``)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, final_ratio: float = 0.0) -> float:
    """Linear warm-up from 0 to 1 over ``warmup_steps``, then cosine from 1 to ``final_ratio``
    at ``total_steps`` (SimCLR, Chen et al. 2020, B.1; Goyal et al. 2017 for the warm-up)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def warmup_step_decay(
    step: int, steps_per_epoch: int, milestones: list[int], gamma: float, warmup_steps: int = 0
) -> float:
    """Linear warm-up, then the lr is multiplied by ``gamma`` at each milestone epoch
    (He et al. 2016; ImCLR's VGG16 recipe: gamma 0.1 at epochs 150 and 225 of 300)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    epoch = step // steps_per_epoch
    return gamma ** sum(1 for m in milestones if epoch >= m)
