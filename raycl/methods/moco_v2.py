"""MoCo v2 (He et al. 2020; Chen et al. 2020b): a query encoder trained by InfoNCE against its
momentum-averaged copy's keys and a queue of past keys.

    f_k.params = m * f_k.params + (1 - m) * f_q.params       # momentum update, no gradient
    q = normalize(g_q(f_q(x_q)))                               # [b, d]
    k = normalize(g_k(f_k(x_k))).detach()
    loss = InfoNCE(q, k+ = k, negatives = queue, tau)          # eq. 1
    enqueue(all_gather(k)); dequeue the oldest               # every worker keeps the same queue

``method.symmetric: true`` also contrasts the second view's query with the first view's key and
averages the two losses (as MoCo v3 and solo-learn's MoCo v2+ do): each image then gives gradient
through both views, which matters on short schedules. The queue still takes one key per image.

BatchNorm: the query's BN statistics over its own batch would let it find its key by batch
statistics (the leak MoCo's shuffle-BN closes). Two cures: ``method.shuffle_bn: true`` (MoCo's own)
computes the keys on a batch shuffled across the workers — each worker's key-BN sees other
workers' images — then un-shuffles; ``model.sync_bn: true`` normalises over the global batch.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from pydantic import Field

from raycl import collectives as dist
from raycl.errors import ConfigError
from raycl.fields import Number
from raycl.losses import info_nce
from raycl.methods.base import Method, MethodBatch, MethodConfig
from raycl.models import build_backbone, mlp


class MoCoV2Config(MethodConfig):
    queue_size: int = Field(65536, ge=1, le=1 << 24, description="negatives kept from past batches")
    key_momentum: Number = Field(0.999, ge=0.0, le=1.0, description="m in the key encoder's EMA")
    symmetric: bool = Field(False, description="also contrast q(view 2) with k(view 1)")
    shuffle_bn: bool = Field(False, description="the key encoder's BatchNorm over a batch shuffled across workers")

    def check(self, cfg) -> None:
        if self.shuffle_bn and cfg.model.sync_bn:
            raise ConfigError(
                "method.shuffle_bn: with model.sync_bn every BN already sees the global batch; pick one of the two"
            )


class MoCoV2(Method):
    name = "moco_v2"
    Config: type[MethodConfig] = MoCoV2Config
    queue: torch.Tensor  # buffers, declared for type checkers
    queue_ptr: torch.Tensor

    def __init__(self, cfg, channels: int):
        super().__init__()
        m = cfg.method
        self.temperature, self.momentum, self.shuffle_bn = m.temperature, m.key_momentum, m.shuffle_bn
        self.symmetric = m.symmetric
        self.backbone = build_backbone(cfg, channels)
        self.projector = mlp(self.backbone.out_dim, cfg.model.proj_hidden_dim, cfg.model.proj_out_dim)
        self.key_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
        self.key_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(m.queue_size, cfg.model.proj_out_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def momentum_update(self) -> None:
        for q, k in ((self.backbone, self.key_backbone), (self.projector, self.key_projector)):
            for pq, pk in zip(q.parameters(), k.parameters()):
                pk.mul_(self.momentum).add_(pq.detach(), alpha=1 - self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        n, size = keys.shape[0], self.queue.shape[0]
        idx = (self.queue_ptr + torch.arange(n, device=keys.device)) % size
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + n) % size)

    def key_net(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.key_projector(self.key_backbone(x)), dim=1)

    @torch.no_grad()
    def keys(self, x_k: torch.Tensor) -> torch.Tensor:
        """k = g_k(f_k(x_k)); with shuffle-BN the global batch is permuted (rank 0's permutation,
        broadcast), each worker encodes its slice of the permuted batch, and the keys are put back."""
        if not self.shuffle_bn or dist.world_size() == 1:
            return self.key_net(x_k)
        b, r = len(x_k), dist.rank()
        x_all = dist.all_gather_nograd(x_k)
        perm = dist.broadcast(torch.randperm(len(x_all), device=x_k.device))
        k_perm = dist.all_gather_nograd(self.key_net(x_all[perm[r * b : (r + 1) * b]]))
        k_all = torch.empty_like(k_perm)
        k_all[perm] = k_perm
        return k_all[r * b : (r + 1) * b]

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(self.backbone(x)), dim=1)

    def contrast(self, x_q: torch.Tensor, x_k: torch.Tensor):
        """L_C (eq. 1), symmetrised when asked; returns it with q, k and the queue it used."""
        q = self.queries(x_q)
        with torch.no_grad():
            self.momentum_update()
            k = self.keys(x_k)
            k_sym = self.keys(x_q) if self.symmetric else None
        queue = self.queue.clone().detach()
        loss = info_nce(q, k, queue, self.temperature)
        if k_sym is not None:  # symmetric
            loss = 0.5 * (loss + info_nce(self.queries(x_k), k_sym, queue, self.temperature))
        return loss, q, k, queue

    def forward(self, batch: MethodBatch):
        x_q, x_k = batch.views[:2]
        loss, _, k, _ = self.contrast(x_q, x_k)
        self.enqueue(dist.all_gather_nograd(k))
        return loss, {}
