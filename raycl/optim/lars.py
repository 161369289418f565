"""LARS (You et al. 2017), in the form SimCLR/BYOL use: per-layer trust ratio on SGD + momentum.

For every parameter w with gradient g that is not excluded:
    u     = g + weight_decay * w
    trust = trust_coefficient * ||w|| / ||u||     (1 where either norm is 0)
    v     = momentum * v + trust * u
    w     = w - lr * v          (nesterov: w - lr * (trust * u + momentum * v))
Excluded parameters (biases and normalisation weights by default) skip both the weight decay and
the trust ratio: v = momentum * v + g. Param groups carry ``lars_exclude`` (bool).

This is exact when the optimizer sees whole parameters (a single process, ZeRO stage 0). Under
ZeRO-1/2 DeepSpeed hands the optimizer flat partitions, so per-layer norms need the partition
boundaries and an all-reduce; the config refuses that combination until the exact version lands.
"""
from __future__ import annotations

import torch


class LARS(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, eps: float = 1e-8, nesterov: bool = False):
        for name, v, ok in (("lr", lr, lr >= 0), ("momentum", momentum, momentum >= 0),
                            ("weight_decay", weight_decay, weight_decay >= 0),
                            ("trust_coefficient", trust_coefficient, trust_coefficient > 0)):
            if not ok:
                raise ValueError(f"LARS: invalid {name} {v!r}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, lars_exclude=False,
                        trust_coefficient=trust_coefficient, eps=eps, nesterov=nesterov)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                u = p.grad
                if not group["lars_exclude"]:
                    u = u.add(p, alpha=group["weight_decay"])
                    wn, un = torch.linalg.vector_norm(p), torch.linalg.vector_norm(u)
                    # torch.where keeps the ratio on the device: no host sync per parameter.
                    trust = torch.where((wn > 0) & (un > 0),
                                        group["trust_coefficient"] * wn / (un + group["eps"]),
                                        torch.ones_like(wn))
                    u = u * trust
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(u).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(u)
                v = state["momentum_buffer"]
                step = u.add(v, alpha=group["momentum"]) if group["nesterov"] else v
                p.add_(step, alpha=-group["lr"])
        return loss
