"""Supervised contrastive learning (Khosla et al. 2020), L_out over the global batch:

for x, y in loader:                         # b samples on this worker
    views = [aug(x) for _ in range(V)]
    z = normalize(g(f(views)))              # [V*b, d]
    Z, Y = all_gather(z), all_gather(y)     # the global batch, with gradient
    loss = mean_{i in this worker's views} L_i(Z, Y)     # eq. 2
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raycl import collectives as dist
from raycl.losses import tcl_per_anchor
from raycl.methods.base import Method, MethodBatch
from raycl.models import build_backbone, mlp


class SupCon(Method):
    name = "supcon"

    @classmethod
    def needs_every_label(cls, method_cfg) -> bool:
        return True

    def __init__(self, cfg, channels: int):
        super().__init__()
        self.temperature = cfg.method.temperature
        self.n_views = cfg.method.views or 2
        self.backbone = build_backbone(cfg, channels)
        self.projector = mlp(self.backbone.out_dim, cfg.model.proj_hidden_dim, cfg.model.proj_out_dim)
        self.k1, self.k2 = 0.0, 1.0  # L_out is TCL's loss with k1 = 0, k2 = 1

    def positives_key(self, batch: MethodBatch) -> torch.Tensor:
        """Which samples are positives of each other: class labels."""
        return batch.labels

    def forward(self, batch: MethodBatch):
        z = F.normalize(self.projector(self.backbone(torch.cat(batch.views))), dim=1)
        key = self.positives_key(batch).repeat(len(batch.views))
        n, r = z.shape[0], dist.rank()
        per = tcl_per_anchor(
            dist.all_gather(z),
            dist.all_gather(key),
            self.temperature,
            self.k1,
            self.k2,
            anchors=slice(r * n, (r + 1) * n),
        )
        return per.mean(), {}
