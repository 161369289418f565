"""SimCLR (Chen et al. 2020): two views, backbone f, projector g, NT-Xent over the global batch.

for x in loader:                      # b samples on this worker
    x1, x2 = aug(x), aug(x)
    z1, z2 = g(f(x1)), g(f(x2))
    Z1, Z2 = all_gather(z1), all_gather(z2)   # with gradient: the whole global batch
    loss = nt_xent(Z1, Z2, tau, anchors = this worker's rows)
"""

from __future__ import annotations

import torch

from raycl import collectives as dist
from raycl.losses import nt_xent
from raycl.methods.base import Method, MethodBatch
from raycl.models import build_backbone, mlp


class SimCLR(Method):
    name = "simclr"

    def __init__(self, cfg, channels: int):
        super().__init__()
        self.temperature = cfg.method.temperature
        self.backbone = build_backbone(cfg, channels)
        self.projector = mlp(self.backbone.out_dim, cfg.model.proj_hidden_dim, cfg.model.proj_out_dim)

    def forward(self, batch: MethodBatch):
        x1, x2 = batch.views
        b = x1.shape[0]
        z = self.projector(self.backbone(torch.cat([x1, x2])))
        z1, z2 = z[:b], z[b:]
        r = dist.rank()
        loss = nt_xent(
            dist.all_gather(z1), dist.all_gather(z2), self.temperature, anchor_rows=slice(r * b, (r + 1) * b)
        )
        return loss, {}
