"""SimCLIC (Siamese learning by representation perturbation): no data augmentation; two
independent perturbations of the representation give the two targets.

    z = f(x)                      # f = backbone + 3-layer projector, BN on every layer
    p = h(z)                      # h = 2-layer predictor, BN except the output
    z1, z2 = g(z), g(z)           # two independent draws of the perturbation g
    L = 1/2 D(p, sg(z2)) + 1/2 D(p, sg(z1))      # D = negative cosine, sg = stop-gradient

Perturbations g, applied to z (the paper's text; its Algorithm 1 writes g(p) — we follow the text):
    dropout: each dimension zeroed with probability p (p <= 0.25 works best)
    noise:   z + delta, delta = u * sign(z), u ~ U(0, 1)^d, rescaled so ||delta||_2 = eps
    history: tau * z_prev + (1 - tau) * z, z_prev = this sample's z at its previous visit, kept in a
             per-sample store keyed by the global index (replicated on every worker; the first
             visit uses z itself). tau in [0.1, 0.6].
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from raycl import collectives as dist
from raycl.errors import ConfigError
from raycl.fields import Number
from raycl.losses import negative_cosine
from raycl.methods.base import Method, MethodBatch, MethodConfig, View
from raycl.models import build_backbone, mlp


def perturb_dropout(z: torch.Tensor, p: float) -> torch.Tensor:
    return z * (torch.rand_like(z) >= p)


def perturb_noise(z: torch.Tensor, eps: float) -> torch.Tensor:
    delta = torch.rand_like(z) * torch.sign(z)
    return z + eps * delta / delta.norm(dim=1, keepdim=True).clamp(min=1e-12)


def perturb_history(z: torch.Tensor, z_prev: torch.Tensor, tau: float) -> torch.Tensor:
    return tau * z_prev + (1 - tau) * z


class SimCLICConfig(MethodConfig):
    perturbation: Literal["history", "dropout", "noise"] = Field("dropout", description="g, applied to z")
    dropout_p: Number = Field(0.2, ge=0.0, le=1.0, description="dropout: probability a dimension is zeroed")
    noise_eps: Number = Field(0.5, ge=0.0, description="noise: ||delta||_2")
    history_tau: Number = Field(0.3, ge=0.0, le=1.0, description="history: weight of the previous visit's z")
    bank_size: int | None = Field(
        None, ge=1, le=1 << 31, description="history: rows of the per-sample store (>= largest sample index + 1)"
    )

    def check(self, cfg) -> None:
        if self.perturbation == "history" and self.bank_size is None:
            raise ConfigError(
                "method.bank_size: simclic's history perturbation keeps each sample's last z; "
                "set it to the number of training samples (4000 for the demo)"
            )


class SimCLIC(Method):
    name = "simclic"
    Config = SimCLICConfig
    n_views = 1
    history: torch.Tensor  # buffers, declared for type checkers
    seen: torch.Tensor

    def views(self) -> list[View]:
        return [View("input to the network", augment="none")]  # no augmentation: the paper's setting

    @classmethod
    def sample_store_size(cls, method_cfg) -> int | None:
        return method_cfg.bank_size if method_cfg.perturbation == "history" else None

    def __init__(self, cfg, channels: int):
        super().__init__()
        m = cfg.method
        self.kind, self.p, self.eps, self.tau = m.perturbation, m.dropout_p, m.noise_eps, m.history_tau
        self.backbone = build_backbone(cfg, channels)
        d = cfg.model.proj_out_dim
        self.projector = mlp(self.backbone.out_dim, cfg.model.proj_hidden_dim, d, layers=3, bn_last=True)
        self.predictor = mlp(d, max(1, cfg.model.proj_hidden_dim // 4), d, layers=2)
        if self.kind == "history":
            self.register_buffer("history", torch.zeros(m.bank_size, d))
            self.register_buffer("seen", torch.zeros(m.bank_size, dtype=torch.bool))

    def perturb(self, z: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if self.kind == "dropout":
            return perturb_dropout(z, self.p)
        if self.kind == "noise":
            return perturb_noise(z, self.eps)
        prev = torch.where(self.seen[index].unsqueeze(1), self.history[index].to(z.dtype), z)
        return perturb_history(z, prev, self.tau)

    def forward(self, batch: MethodBatch):
        (x,) = batch.views[:1]
        z = self.projector(self.backbone(x))
        p = self.predictor(z)
        zd = z.detach()
        z1, z2 = self.perturb(zd, batch.index), self.perturb(zd, batch.index)
        loss = 0.5 * negative_cosine(p, z2) + 0.5 * negative_cosine(p, z1)
        if self.kind == "history" and self.training:
            self.remember(dist.all_gather_nograd(batch.index), dist.all_gather_nograd(zd))
        return loss, {}

    @torch.no_grad()
    def remember(self, index: torch.Tensor, z: torch.Tensor) -> None:
        if int(index.max()) >= self.history.shape[0]:
            raise IndexError(f"sample index {int(index.max())} >= method.bank_size {self.history.shape[0]}")
        self.history[index] = z.to(self.history.dtype)
        self.seen[index] = True
