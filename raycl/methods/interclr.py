"""InterCLR (Xie et al. 2022): intra- and inter-image invariance with a memory bank and online
k-means pseudo-labels.

    v = normalize(g(f(aug(x))))                                    # [b, 128]
    intra: k+ = bank[i],              K negatives drawn from the bank at random
    inter: k+ = a random bank row of i's cluster,
           K negatives from other clusters by strategy (hard / semi_hard / random / semi_easy)
    L = lambda * MarginNCE(v, k+, negs; m_intra) + (1 - lambda) * MarginNCE(v, k+, negs; m_inter)
    bank[i] <- normalize((1 - w) bank[i] + w v_i)  for the all-gathered batch
    k-means: re-assign the batch's rows, recompute centroids, re-seed empty clusters

``method.bank_layout``: ``sharded`` (each worker holds every world-th row; anchors are the global
batch so each shard scores its own rows; only log-sum-exps and their gradients cross workers) or
``replicated`` (every worker holds the bank; anchors are its own batch). Both pick the same samples
(raycl.bank.select) and give the same loss.

Initialisation (``method.bank_init``), section 3.2: "we first initialize all the features, labels
and centroids via a global clustering process". ``features`` (default, as the paper and its code
base, OpenSelfSup ODC's ``init_memory``): before the first step every training sample's embedding
under the initial network (eval mode, un-augmented) is written into the bank, each worker computing
its share, then global Lloyd k-means clusters those rows (``init_from_features``; BatchNorm with
each chunk's statistics, as the network computes in training). ``random``:
random unit rows, clustered at the first step. A resumed run takes bank and labels from its
checkpoint instead. The bank and the cluster labels are gathered into every
checkpoint (``gather_state``) and re-sharded on load, so a run may resume on another worker count.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from raycl import collectives as dist
from raycl.bank import (
    MemoryBank,
    OnlineKMeans,
    Shard,
    bank_logsumexp,
    inter_negatives,
    inter_positives,
    intra_negatives,
)
from raycl.errors import ConfigError
from raycl.fields import Number
from raycl.losses import margin_nce_lse
from raycl.methods.base import Method, MethodBatch, MethodConfig
from raycl.models import build_backbone, mlp
from raycl.models.bn import batch_statistics


class InterCLRConfig(MethodConfig):
    bank_size: int | None = Field(
        None,
        ge=1,
        le=1 << 31,
        description="memory bank rows: the number of training samples (>= largest sample index + 1)",
    )
    bank_momentum: Number = Field(0.5, gt=0.0, le=1.0, description="w in v <- (1 - w) v + w v_new")
    num_clusters: int = Field(10000, ge=1, le=1 << 24, description="k of the online k-means")
    num_negatives: int = Field(16384, ge=1, le=1 << 24, description="K negatives per anchor and branch")
    strategy: Literal["semi_hard", "hard", "random", "semi_easy"] = Field(
        "semi_hard", description="how the inter-image negatives are drawn from other clusters"
    )
    bank_init: Literal["features", "random"] = Field(
        "features", description="initial bank: the initial network's embeddings (paper 3.2) or random unit rows"
    )
    bank_layout: Literal["sharded", "replicated"] = Field(
        "sharded", description="bank rows split over the workers, or whole on each"
    )
    bank_sync_every: int = Field(
        0, ge=0, description="steps between pushes of the bank to the BankServer actor; 0 = no server"
    )
    intra_margin: Number = Field(0.0, description="MarginNCE margin of the intra-image branch")
    inter_margin: Number = Field(-0.5, description="MarginNCE margin of the inter-image branch")
    lam: Number = Field(0.75, ge=0.0, le=1.0, description="lambda in lambda L_intra + (1 - lambda) L_inter")

    def check(self, cfg) -> None:
        if self.bank_size is None:
            raise ConfigError(
                "method.bank_size: interclr's memory bank needs the number of training samples (4000 for the demo)"
            )
        if self.num_clusters > self.bank_size:
            raise ConfigError(
                f"method.num_clusters: {self.num_clusters} clusters > method.bank_size {self.bank_size} rows"
            )
        if self.num_negatives >= self.bank_size:
            raise ConfigError(
                f"method.num_negatives: K={self.num_negatives} must be < method.bank_size {self.bank_size}"
            )

    @property
    def bank_sync_steps(self) -> int:
        return self.bank_sync_every


class InterCLR(Method):
    name = "interclr"
    Config = InterCLRConfig
    n_views = 1

    @classmethod
    def sample_store_size(cls, method_cfg) -> int | None:
        return method_cfg.bank_size

    def __init__(self, cfg, channels: int):
        super().__init__()
        m = cfg.method
        self.tau, self.lam, self.k, self.strategy = m.temperature, m.lam, m.num_negatives, m.strategy
        self.m_intra, self.m_inter, self.seed = m.intra_margin, m.inter_margin, cfg.run.seed
        self.bank_init = m.bank_init
        self.backbone = build_backbone(cfg, channels)
        self.projector = mlp(self.backbone.out_dim, cfg.model.proj_hidden_dim, cfg.model.proj_out_dim)
        shard = Shard(dist.rank(), dist.world_size()) if m.bank_layout == "sharded" else Shard()
        self.bank = MemoryBank(m.bank_size, cfg.model.proj_out_dim, m.bank_momentum, shard, cfg.run.seed)
        self.kmeans = OnlineKMeans(m.num_clusters, self.bank, cfg.run.seed)

    def forward(self, batch: MethodBatch):
        (x,) = batch.views[:1]
        bank, km, sharded = self.bank, self.kmeans, self.bank.shard.collective
        bank.check(batch.index)
        v = F.normalize(self.projector(self.backbone(x)), dim=1)
        if not bool(km.initialized):
            km.initialize()
        all_index, all_v = dist.all_gather_nograd(batch.index), dist.all_gather_nograd(v.detach())
        # anchors: the global batch when the bank is sharded (every shard scores its rows for all)
        a_index, a_v = (all_index, all_v) if sharded else (batch.index, v.detach())
        a_labels = km.labels_of(a_index)
        step, own = int(km.steps), slice(dist.rank() * len(v), (dist.rank() + 1) * len(v)) if sharded else slice(None)

        intra = intra_negatives(bank, a_index, self.k, self.seed, step)
        l_intra = margin_nce_lse(
            v, bank.fetch(a_index)[own], bank_logsumexp(v, bank, intra, self.tau), self.m_intra, self.tau
        )
        inter = inter_negatives(bank, km, a_v, a_index, a_labels, self.k, self.strategy, self.seed, step)
        pos = bank.fetch(inter_positives(bank, km, a_index, a_labels, self.seed, step))[own]
        l_inter = margin_nce_lse(v, pos, bank_logsumexp(v, bank, inter, self.tau), self.m_inter, self.tau)
        loss = self.lam * l_intra + (1 - self.lam) * l_inter
        stats = {}
        if self.training:
            bank.update(all_index, all_v)
            stats = km.step(all_index)
        return loss, {"l_intra": l_intra.detach(), "l_inter": l_inter.detach(), **stats}

    @torch.no_grad()
    def init_from_features(self, chunks, device="cpu") -> bool:
        """Bank rows <- normalize(g(f(x))) of every training sample under the current (initial)
        network, then global k-means. ``chunks`` yields this worker's (index, normalised images or None)
        per round (``raycl.data.eval_rounds``); every worker runs the same number of rounds (collectives).

        BatchNorm uses each chunk's own statistics, as in training: at initialisation the running
        statistics are 0 / 1, and eval-mode embeddings of the digits were all within a few degrees
        of each other (mean pairwise cosine 0.997, vs 0.33 in training), so k-means on them churned
        and every negative looked like the positive. A chunk is the same rows on any worker count,
        so the bank still does not depend on the layout. ``method.bank_init: random`` keeps the random
        unit rows the bank was built with."""
        if self.bank_init != "features":
            return False
        with batch_statistics(self):
            for index, images in chunks:
                if images is None:
                    v = torch.zeros(0, self.bank.dim, device=index.device)
                else:
                    x = images.to(next(self.parameters()).dtype)
                    v = F.normalize(self.projector(self.backbone(x)).float(), dim=1)
                self.bank.write(index, v)
        self.kmeans.initialize()
        return True

    def gather_state(self) -> dict:
        """Bank rows and cluster labels of the whole bank (a collective when sharded)."""
        return {"bank_rows": self.bank.full().cpu(), "kmeans_labels": self.kmeans.all_labels().cpu()}

    def load_gathered_state(self, state: dict) -> None:
        self.bank.load_full(state["bank_rows"].to(self.bank.rows.device))
        self.kmeans.load_labels(state["kmeans_labels"].to(self.bank.rows.device))

    def bank_stats(self) -> dict:
        """What the BankServer and the epoch metrics report about the clustering."""
        sizes = self.kmeans.counts.float()
        return {
            "cluster_size_min": int(sizes.min()),
            "cluster_size_max": int(sizes.max()),
            "cluster_size_median": float(sizes.median()),
            "clusters_empty": int((sizes == 0).sum()),
        }
