"""CLSA: contrastive learning with stronger augmentations (Wang & Qi 2021) — MoCo v2 plus a
distributional divergence between a weak and a strong view of the same image.

    q' = g_q(f_q(weak_1)),  k = g_k(f_k(weak_2))          # MoCo v2, as in moco_v2.py
    L_C = InfoNCE(q', k, queue, tau)                       # eq. 1
    candidates = {k} U queue
    p(c | z)  = softmax_c( z . c / tau )
    for each strong view z'' (CLSA-Single: one at 96 px; CLSA-Multi: 224/192/160/128/96):
        L_D += -1/B sum_i sum_c p(c | q'_i) log p(c | z''_i)   # eq. 6; p(. | q') is a target
    loss = L_C + beta * L_D;  enqueue(all_gather(k))

Strong views are the weak pipeline at the strong view's size followed by 14 ops drawn 5 times
(raycl.data.strong_aug).
"""

from __future__ import annotations

import torch
from pydantic import Field

from raycl import collectives as dist
from raycl.errors import ConfigError
from raycl.fields import Number
from raycl.losses import ddm_loss
from raycl.methods.base import MethodBatch, View
from raycl.methods.moco_v2 import MoCoV2, MoCoV2Config


class CLSAConfig(MoCoV2Config):
    strong_sizes: list[int] = Field(
        [96], description="one strong view per size (px): CLSA-Single [96], CLSA-Multi [224, 192, 160, 128, 96]"
    )
    ddm_weight: Number = Field(1.0, ge=0.0, description="beta in L_C + beta L_D")

    def check(self, cfg) -> None:
        super().check(cfg)
        if not self.strong_sizes or min(self.strong_sizes) < 8:
            raise ConfigError(
                f"method.strong_sizes: CLSA needs at least one strong view of >= 8 px, got {self.strong_sizes}; "
                "CLSA-Single uses [96], CLSA-Multi [224, 192, 160, 128, 96]"
            )


class CLSA(MoCoV2):
    name = "clsa"
    Config = CLSAConfig

    def __init__(self, cfg, channels: int):
        super().__init__(cfg, channels)
        self.strong_sizes, self.beta = list(cfg.method.strong_sizes), cfg.method.ddm_weight
        self.n_views = 2 + len(self.strong_sizes)

    def views(self) -> list[View]:
        """Two weak views, then one strong view per entry of ``strong_sizes``: the weak pipeline
        cropped to that size, then the 14-op strong augmentation. Both at SimCLR's own strengths,
        as the paper's code makes them."""
        weak = [View(f"weak {i}", augment="paper") for i in (1, 2)]
        return weak + [View(f"strong {s}px", augment="paper", size=s, strong=True) for s in self.strong_sizes]

    def logits(self, z: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        """sim(z, c) / tau over the candidates {k_i} U queue (column 0 is the positive key)."""
        return torch.cat([(z * k).sum(1, keepdim=True), z @ queue.T], dim=1) / self.temperature

    def forward(self, batch: MethodBatch):
        x_q, x_k, *strong = batch.views
        l_c, q, k, queue = self.contrast(x_q, x_k)
        weak = self.logits(q, k, queue)
        l_d = torch.stack([ddm_loss(weak, self.logits(self.queries(x), k, queue)) for x in strong]).sum()
        self.enqueue(dist.all_gather_nograd(k))
        return l_c + self.beta * l_d, {"l_contrast": l_c.detach(), "l_ddm": l_d.detach()}
