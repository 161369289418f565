"""Optimizers and schedules (plain PyTorch)."""
from __future__ import annotations

import functools

import torch

from raycl.optim.lars import LARS
from raycl.optim.schedule import warmup_cosine


def is_bias_or_norm(name: str, p: torch.nn.Parameter) -> bool:
    return p.ndim <= 1  # biases, BatchNorm/LayerNorm weights and biases


def param_groups(model: torch.nn.Module, weight_decay: float, exclude_bias_and_norm: bool = True) -> list[dict]:
    """Two groups: regular weights, and biases/norm parameters without weight decay or trust ratio."""
    regular, excluded = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (excluded if exclude_bias_and_norm and is_bias_or_norm(name, p) else regular).append(p)
    groups = [{"params": regular, "weight_decay": weight_decay, "lars_exclude": False}]
    if excluded:
        groups.append({"params": excluded, "weight_decay": 0.0, "lars_exclude": True})
    return groups


def build_optimizer(model: torch.nn.Module, optim_cfg, lr: float) -> torch.optim.Optimizer:
    groups = param_groups(model, optim_cfg.weight_decay, optim_cfg.lars_exclude_bias_and_norm)
    if optim_cfg.name == "lars":
        return LARS(groups, lr=lr, momentum=optim_cfg.momentum, weight_decay=optim_cfg.weight_decay,
                    trust_coefficient=optim_cfg.trust_coefficient)
    return torch.optim.SGD(groups, lr=lr, momentum=optim_cfg.momentum, weight_decay=optim_cfg.weight_decay)


def build_schedule(optimizer, total_steps: int, warmup_steps: int, final_ratio: float):
    fn = functools.partial(warmup_cosine, total_steps=total_steps, warmup_steps=warmup_steps,
                           final_ratio=final_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


__all__ = ["LARS", "build_optimizer", "build_schedule", "param_groups", "warmup_cosine"]
