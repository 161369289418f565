"""InterCLR (Xie et al. 2022): intra- and inter-image invariance with a memory bank and online
k-means pseudo-labels.

    v = normalize(g(f(aug(x))))                                    # [b, 128]
    intra: k+ = bank[i],              K negatives drawn from the bank at random
    inter: k+ = a random bank row of i's cluster,
           K negatives from other clusters by strategy (hard / semi_hard / random / semi_easy)
    L = lambda * MarginNCE(v, k+, negs; m_intra) + (1 - lambda) * MarginNCE(v, k+, negs; m_inter)
    bank[i] <- normalize((1 - w) bank[i] + w v_i)  for the all-gathered batch
    k-means: re-assign the batch's rows, recompute centroids, re-seed empty clusters

The bank is replicated on every worker (the layout for banks that fit); k-means starts once from
global Lloyd iterations over the (random-unit) bank at the first step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from raycl import dist
from raycl.bank import MemoryBank, OnlineKMeans, sample_negatives, sample_positives
from raycl.losses import margin_nce
from raycl.methods.base import Method, MethodBatch
from raycl.models import build_backbone, mlp


class InterCLR(Method):
    name = "interclr"
    n_views = 1

    def __init__(self, cfg, channels: int):
        super().__init__()
        m = cfg.method
        self.tau, self.lam, self.k, self.strategy = m.temperature, m.lam, m.num_negatives, m.strategy
        self.m_intra, self.m_inter, self.seed = m.intra_margin, m.inter_margin, cfg.run.seed
        self.backbone = build_backbone(cfg, channels)
        self.projector = mlp(self.backbone.out_dim, cfg.model.proj_hidden_dim, cfg.model.proj_out_dim)
        self.bank = MemoryBank(m.bank_size, cfg.model.proj_out_dim, m.bank_momentum)
        self.kmeans = OnlineKMeans(m.num_clusters, m.bank_size, cfg.model.proj_out_dim, cfg.run.seed)

    def forward(self, batch: MethodBatch):
        (x,) = batch.views[:1]
        index = batch.index
        self.bank.check(index)
        v = F.normalize(self.projector(self.backbone(x)), dim=1)
        if not bool(self.kmeans.initialized):
            self.kmeans.initialize(self.bank.rows)
        rows, labels = self.bank.rows, self.kmeans.labels
        # The same draws on every worker: a generator seeded by (seed, step, rank) on the CPU.
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.kmeans.steps) * 1009 + dist.rank())
        n = len(rows)
        intra_neg = rows[torch.randint(n, (len(index), self.k), generator=g).to(rows.device)]
        l_intra = margin_nce(v, rows[index], intra_neg, self.m_intra, self.tau)
        neg = sample_negatives(v.detach(), rows, labels, labels[index], self.k, self.strategy, g)
        pos = sample_positives(index, labels, g)
        l_inter = margin_nce(v, rows[pos], rows[neg], self.m_inter, self.tau)
        loss = self.lam * l_intra + (1 - self.lam) * l_inter
        if self.training:
            all_index, all_v = dist.all_gather_nograd(index), dist.all_gather_nograd(v.detach())
            self.bank.update(all_index, all_v)
            stats = self.kmeans.step(self.bank.rows, all_index)
        else:
            stats = {}
        return loss, {"l_intra": l_intra.detach(), "l_inter": l_inter.detach(), **stats}
