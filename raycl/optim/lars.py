"""LARS (You et al. 2017), in the form SimCLR/BYOL use: per-layer trust ratio on SGD + momentum.

For every parameter w with gradient g that is not excluded:
    u     = g + weight_decay * w
    trust = trust_coefficient * ||w|| / ||u||     (1 where either norm is 0)
    v     = momentum * v + trust * u
    w     = w - lr * v          (nesterov: w - lr * (trust * u + momentum * v))
Excluded parameters (biases and normalisation weights, ndim <= 1, by default) skip both the weight
decay and the trust ratio: v = momentum * v + g. Param groups carry ``lars_exclude`` (bool).

Under DeepSpeed ZeRO-1/2 the optimizer never sees a layer: it gets one flat fp32 partition per
param group per rank, and a partition boundary can cut a layer in two. ``attach_zero`` gives LARS
the layer boundaries inside each partition (``ZeroLayout``); the step then sums ||w||^2 and ||u||^2
per layer over the local pieces, all-reduces those partial sums across the data-parallel group in
one collective (2 floats per layer), and applies the same trust ratio every rank would see
unpartitioned. The update then equals the single-process one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class ZeroLayout:
    """Where each layer of one param group lies inside this rank's flat partition."""

    seg: torch.Tensor  # int64 [partition numel]: layer id of each element; n_layers for padding
    n_layers: int  # layers in the whole group (on every rank)
    group: Any  # the data-parallel process group


def zero_layouts(zero_optimizer) -> list[ZeroLayout]:
    """Read the flat-partition layout from a DeepSpeed ZeRO stage 1/2 optimizer.

    DeepSpeed flattens param group i as ``round_robin_bit16_groups[i]`` at
    ``round_robin_bit16_offsets[i]`` (with alignment padding between params) and gives rank r the
    elements [r * P, (r + 1) * P), P = ``partition_size[i]``."""
    z = zero_optimizer
    if getattr(z, "round_robin_gradients", False):
        raise ValueError("LARS under ZeRO needs round_robin_gradients: false")
    layouts = []
    for i, flat in enumerate(z.single_partition_of_fp32_groups):
        pg = z.real_dp_process_group[i]
        r = dist.get_rank(group=pg)
        size = z.partition_size[i]
        lo, hi = r * size, (r + 1) * size
        metas = z.round_robin_bit16_meta[i]
        seg = torch.full((flat.numel(),), len(metas), dtype=torch.long, device=flat.device)
        for j, (off, meta) in enumerate(zip(z.round_robin_bit16_offsets[i], metas)):
            a, b = max(off, lo), min(off + meta.numel(), hi)
            if a < b:
                seg[a - lo : b - lo] = j
        layouts.append(ZeroLayout(seg, len(metas), pg))
    return layouts


def _trust(w_sq, u_sq, coeff, eps):
    wn, un = w_sq.sqrt(), u_sq.sqrt()
    # torch.where keeps the ratio on the device: no host sync per layer.
    return torch.where((wn > 0) & (un > 0), coeff * wn / (un + eps), torch.ones_like(wn))


def split_bias_and_norm(params) -> list[dict]:
    """Param groups that do not say ``lars_exclude`` are split: parameters with ndim <= 1 (biases,
    BatchNorm/LayerNorm weights) go to a group that skips weight decay and the trust ratio, as in
    the SimCLR/BYOL/Barlow Twins LARS; groups that set ``lars_exclude`` are kept as given."""
    params = list(params)
    groups = params if params and isinstance(params[0], dict) else [{"params": params}]
    out = []
    for g in groups:
        if "lars_exclude" in g:
            out.append(g)
            continue
        ps = [g["params"]] if isinstance(g["params"], torch.Tensor) else list(g["params"])
        rest = {k: v for k, v in g.items() if k != "params"}
        regular, flat = [p for p in ps if p.ndim > 1], [p for p in ps if p.ndim <= 1]
        if regular:
            out.append({**rest, "params": regular, "lars_exclude": False})
        if flat:
            out.append({**rest, "params": flat, "lars_exclude": True, "weight_decay": 0.0})
    return out


class LARS(torch.optim.Optimizer):
    """``LARS(model.parameters(), lr)`` excludes biases and normalisation parameters (ndim <= 1)
    from weight decay and the trust ratio; ``exclude_bias_and_norm=False`` adapts every parameter.
    Param groups with a ``lars_exclude`` key (what ``raycl.optim.param_groups`` builds) decide for
    themselves."""

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
        nesterov: bool = False,
        exclude_bias_and_norm: bool = True,
    ):
        for name, v, ok in (
            ("lr", lr, lr >= 0),
            ("momentum", momentum, momentum >= 0),
            ("weight_decay", weight_decay, weight_decay >= 0),
            ("trust_coefficient", trust_coefficient, trust_coefficient > 0),
        ):
            if not ok:
                raise ValueError(f"LARS: invalid {name} {v!r}")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            lars_exclude=False,
            trust_coefficient=trust_coefficient,
            eps=eps,
            nesterov=nesterov,
        )
        super().__init__(split_bias_and_norm(params) if exclude_bias_and_norm else params, defaults)
        self.zero: list[ZeroLayout] | None = None

    def attach_zero(self, zero_optimizer) -> None:
        """Make the step exact under ZeRO-1/2 (call after ``deepspeed.initialize``)."""
        self.zero = zero_layouts(zero_optimizer)

    def _directions(self) -> list[list[torch.Tensor | None]]:
        """u = g (+ wd w, scaled by the trust ratio) for every parameter, group by group."""
        dirs = [
            [
                None if p.grad is None else (p.grad if g["lars_exclude"] else p.grad.add(p, alpha=g["weight_decay"]))
                for p in g["params"]
            ]
            for g in self.param_groups
        ]
        if self.zero is None:
            for g, ds in zip(self.param_groups, dirs):
                if g["lars_exclude"]:
                    continue
                for k, (p, u) in enumerate(zip(g["params"], ds)):
                    if u is not None:
                        sq = lambda t: torch.linalg.vector_norm(t) ** 2  # noqa: E731
                        ds[k] = u * _trust(sq(p), sq(u), g["trust_coefficient"], g["eps"])
            return dirs
        # ZeRO: one flat partition per group; per-layer partial sums, one all-reduce for all groups.
        todo = [gi for gi, g in enumerate(self.param_groups) if not g["lars_exclude"] and dirs[gi][0] is not None]
        if not todo:
            return dirs
        parts = []
        for gi in todo:
            lay, p, u = self.zero[gi], self.param_groups[gi]["params"][0], dirs[gi][0]
            assert u is not None  # todo holds the groups with a gradient
            acc = torch.zeros(2, lay.n_layers + 1, dtype=torch.float32, device=p.device)
            acc[0].index_add_(0, lay.seg, p.detach().float() ** 2)
            acc[1].index_add_(0, lay.seg, u.float() ** 2)
            parts.append(acc[:, :-1])
        sums = torch.cat(parts, dim=1).contiguous()
        dist.all_reduce(sums, group=self.zero[todo[0]].group)
        start = 0
        for gi, part in zip(todo, parts):
            g, lay = self.param_groups[gi], self.zero[gi]
            n = part.shape[1]
            trust = _trust(sums[0, start : start + n], sums[1, start : start + n], g["trust_coefficient"], g["eps"])
            start += n
            scale = torch.cat([trust, trust.new_ones(1)])[lay.seg]
            u = dirs[gi][0]
            assert u is not None
            dirs[gi][0] = u * scale.to(u.dtype)
        return dirs

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, ds in zip(self.param_groups, self._directions()):
            for p, u in zip(group["params"], ds):
                if u is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(u).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(u)
                v = state["momentum_buffer"]
                step = u.add(v, alpha=group["momentum"]) if group["nesterov"] else v
                p.add_(step, alpha=-group["lr"])
        return loss
