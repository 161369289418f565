"""A raycl method in a package of its own: SimCLR's NT-Xent over the global batch, scaled by a weight.

Installed, it registers itself through the ``raycl.methods`` entry point group (see pyproject.toml),
and ``raycl train recipe:demo method.name=toy_contrast`` trains it on Ray workers, raycl unedited.

    for x in loader:                          # b samples on this worker
        x1, x2 = aug(x), aug(x)               # the data pipeline makes the views (Method.views)
        z1, z2 = g(f(x1)), g(f(x2))
        Z1, Z2 = all_gather(z1), all_gather(z2)   # with gradient: the whole global batch
        loss = loss_weight * nt_xent(Z1, Z2, tau, anchors = this worker's rows)
"""

from __future__ import annotations

import torch
from pydantic import Field

from raycl import collectives as dist
from raycl.errors import ConfigError
from raycl.fields import Number
from raycl.losses import nt_xent
from raycl.methods import Method, MethodBatch, MethodConfig
from raycl.models import build_backbone, mlp


class ToyConfig(MethodConfig):
    """The ``method:`` keys of toy_contrast: raycl's shared ones (name, temperature, views) and its own."""

    loss_weight: Number = Field(1.0, gt=0.0, description="the loss is multiplied by it")

    def check(self, cfg) -> None:
        # A rule across keys, run on the driver with the whole config at hand: one error line, naming the key.
        if self.loss_weight > 1 and cfg.optim.base_lr > 1:
            raise ConfigError("method.loss_weight: above 1 with optim.base_lr above 1 diverges")


class ToyContrast(Method):
    name = "toy_contrast"  # method.name, equal to the entry point's name
    Config = ToyConfig
    n_views = 2  # two views of SimCLR's pipeline at the data.* strengths: Method.views's default

    def __init__(self, cfg, channels: int):
        super().__init__()
        self.temperature, self.loss_weight = cfg.method.temperature, cfg.method.loss_weight
        self.backbone = build_backbone(cfg, channels)  # the encoder kNN and the linear probe evaluate
        self.projector = mlp(self.backbone.out_dim, cfg.model.proj_hidden_dim, cfg.model.proj_out_dim)

    def forward(self, batch: MethodBatch):
        x1, x2 = batch.views
        b, r = x1.shape[0], dist.rank()
        z = self.projector(self.backbone(torch.cat([x1, x2])))
        # Every worker's embeddings are negatives; this worker's rows are the anchors it is scored on.
        loss = nt_xent(
            dist.all_gather(z[:b]), dist.all_gather(z[b:]), self.temperature, anchor_rows=slice(r * b, (r + 1) * b)
        )
        return self.loss_weight * loss, {"toy_scalar": loss.detach()}  # logged as method/toy_scalar
