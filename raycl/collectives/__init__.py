"""Collectives with the gradients contrastive learning needs; plain torch.distributed, no Ray.
Every helper is the identity in a single process, so methods run unchanged without a process group."""

from __future__ import annotations

import socket

import torch
import torch.distributed as dist

# Bytes this process sent into collectives (counted when world > 1), for benchmarks' traffic figures.
traffic = {"all_gather": 0, "all_reduce": 0, "broadcast": 0}


def _count(kind: str, t: torch.Tensor, rows: int | None = None) -> None:
    n = t.numel() if rows is None else rows * (t[0].numel() if len(t) else 0)
    traffic[kind] += n * t.element_size()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


class _AllGather(torch.autograd.Function):
    """Concatenate every rank's tensor along dim 0; backward sums the gradient every rank's loss
    sends to this rank's rows (a bare all_gather drops it: lightly#1528, lightly#1977)."""

    @staticmethod
    def forward(ctx, x):
        ctx.n = x.shape[0]
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        _count("all_gather", x)
        dist.all_gather(out, x.contiguous())
        return torch.cat(out)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        _count("all_reduce", grad)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        r = dist.get_rank()
        return grad[r * ctx.n : (r + 1) * ctx.n]


def all_gather(x: torch.Tensor) -> torch.Tensor:
    """Differentiable all-gather of equal-size tensors along dim 0.

    With per-rank losses averaged over ranks (as the data-parallel gradient average does), the
    gradient reaching each rank equals that of the single-process loss on the global batch."""
    return _AllGather.apply(x) if world_size() > 1 else x


@torch.no_grad()
def all_gather_nograd(x: torch.Tensor) -> torch.Tensor:
    """All-gather tensors whose first dimension may differ across ranks (evaluation features)."""
    if world_size() == 1:
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    m = int(max(s.item() for s in sizes))
    pad = torch.zeros((m - x.shape[0],) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    out = [torch.empty((m,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device) for _ in sizes]
    _count("all_gather", x, rows=m)
    dist.all_gather(out, torch.cat([x, pad]).contiguous())
    return torch.cat([o[: int(s.item())] for o, s in zip(out, sizes)])


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    if world_size() > 1:
        _count("all_reduce", x)
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def broadcast(x: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Every rank gets rank ``src``'s tensor (in place)."""
    if world_size() > 1:
        _count("broadcast", x)
        dist.broadcast(x, src)
    return x


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Every rank's buffers of ``module`` (BatchNorm's running statistics) <- rank ``src``'s, as DDP's
    ``broadcast_buffers`` does each step and DeepSpeed never does."""
    for buffer in module.buffers():
        broadcast(buffer, src)


def free_port() -> int:
    """A local TCP port nobody listens on now: a process group's rendezvous, a local Ray dashboard."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
