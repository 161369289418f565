"""Tuned Contrastive Learning (Animesh & Chandraker), eq. 4.1-4.3:

    supervised:       2 views, P(i) = the other view and every same-label sample
    self-supervised:  3 views (positive triplets), P(i) = the other views of the same image
    z = normalize(g(f(views))); Z = all_gather(z)
    L_i = -1/|P(i)| sum_p log( exp(z_i.z_p/tau) / D(z_i) ),
    D(z_i) = sum_P exp(z_i.z_p'/tau) + k1 sum_P exp(-z_i.z_p') + k2 sum_N exp(z_i.z_n/tau)

k1, k2 >= 1 (validated); the recipes: supervised tau 0.1, k1 4000-5000, k2 1; self-supervised k1 1,
k2 1.5, projector 2048 -> 256, SGD wrapped in LARS.
"""

from __future__ import annotations

import torch
from pydantic import Field

from raycl.errors import ConfigError
from raycl.fields import Number
from raycl.methods.base import MethodBatch, MethodConfig
from raycl.methods.supcon import SupCon


class TCLConfig(MethodConfig):
    supervised: bool = Field(False, description="positives are same-label samples (else views of one image)")
    k1: Number = Field(1.0, ge=0.0, description="weight of the positives' exp(-z_i.z_p) term (>= 1)")
    k2: Number = Field(1.0, ge=0.0, description="weight of the negatives (>= 1)")

    def check(self, cfg) -> None:
        if self.k1 < 1 or self.k2 < 1:
            bad = "k1" if self.k1 < 1 else "k2"
            raise ConfigError(
                f"method.{bad}: TCL needs k1, k2 >= 1 (paper: supervised k1 4000-5000, k2 1; "
                f"self-supervised k1 1, k2 1.5), got {getattr(self, bad)}"
            )


class TCL(SupCon):
    name = "tcl"
    Config = TCLConfig

    @classmethod
    def needs_every_label(cls, method_cfg) -> bool:
        return method_cfg.supervised

    def __init__(self, cfg, channels: int):
        super().__init__(cfg, channels)
        self.supervised = cfg.method.supervised
        self.n_views = cfg.method.views or (2 if self.supervised else 3)
        self.k1, self.k2 = cfg.method.k1, cfg.method.k2

    def positives_key(self, batch: MethodBatch) -> torch.Tensor:
        # Self-supervised: views of one image share its global index, and nothing else does.
        return batch.labels if self.supervised else batch.index
