"""Optimizers and schedules (plain PyTorch)."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import torch

from raycl.optim.lars import LARS
from raycl.optim.schedule import warmup_cosine, warmup_step_decay


def is_bias_or_norm(name: str, p: torch.nn.Parameter) -> bool:
    return p.ndim <= 1  # biases, BatchNorm/LayerNorm weights and biases


def param_groups(
    model: torch.nn.Module, weight_decay: float, exclude_bias_and_norm: bool = True, exclude: Sequence[str] = ()
) -> list[dict]:
    """Two groups: regular weights, and parameters without weight decay or trust ratio (biases and
    norm parameters by default, and names matching any regex in ``exclude``)."""
    pats = [re.compile(p) for p in exclude]
    regular: list[torch.nn.Parameter] = []
    excluded: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            out = (exclude_bias_and_norm and is_bias_or_norm(name, p)) or any(r.search(name) for r in pats)
            (excluded if out else regular).append(p)
    groups = [{"params": regular, "weight_decay": weight_decay, "lars_exclude": False}]
    if excluded:
        groups.append({"params": excluded, "weight_decay": 0.0, "lars_exclude": True})
    return groups


def build_optimizer(model: torch.nn.Module, optim_cfg, lr: float) -> torch.optim.Optimizer:
    groups = param_groups(model, optim_cfg.weight_decay, optim_cfg.lars_exclude_bias_and_norm, optim_cfg.lars_exclude)
    if optim_cfg.name == "lars":
        return LARS(
            groups,
            lr=lr,
            momentum=optim_cfg.momentum,
            weight_decay=optim_cfg.weight_decay,
            trust_coefficient=optim_cfg.trust_coefficient,
        )
    return torch.optim.SGD(groups, lr=lr, momentum=optim_cfg.momentum, weight_decay=optim_cfg.weight_decay)


def build_schedule(optimizer, optim_cfg, steps_per_epoch: int, epochs: int, peak_lr: float):
    """LambdaLR over optimizer steps: warm-up (``warmup_steps``, else ``warmup_epochs``), then
    cosine to ``final_lr`` or step decay at ``milestones``."""
    o = optim_cfg
    warmup = o.warmup_steps if o.warmup_steps is not None else int(round(o.warmup_epochs * steps_per_epoch))
    if o.schedule == "step":
        fn = functools.partial(
            warmup_step_decay,
            steps_per_epoch=steps_per_epoch,
            milestones=list(o.milestones),
            gamma=o.gamma,
            warmup_steps=warmup,
        )
    else:
        fn = functools.partial(
            warmup_cosine,
            total_steps=epochs * steps_per_epoch,
            warmup_steps=warmup,
            final_ratio=o.final_lr / peak_lr if peak_lr > 0 else 0.0,
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


__all__ = ["LARS", "build_optimizer", "build_schedule", "param_groups", "warmup_cosine", "warmup_step_decay"]
