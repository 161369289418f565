"""Online mini-batch k-means over the memory bank (InterCLR section 3.2; ODC's empty-cluster rule).

Global k-means once at the start; then every step the batch's rows are re-assigned to their
nearest centroid and each centroid is the (normalised) mean of the bank rows currently in it,
from per-cluster sums and counts all-reduced across the bank's shards. An empty cluster is
re-seeded by splitting the largest one: it takes that cluster's member with the largest hash
key (a pure function of seed, step and row, so every layout picks the same row).
Centroids [k, D] are replicated; each worker keeps the labels of the rows it owns.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from raycl import collectives as dist
from raycl.bank.memory import MemoryBank, gather_sharded
from raycl.bank.select import hash_u32, make_keys
from raycl.errors import BankError


def lloyd(rows: torch.Tensor, k: int, iters: int = 100, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Single-process spherical Lloyd k-means until no label changes (at most ``iters`` rounds):
    (centroids [k, d], labels [N]). Initial centroids: the rows ``initial_rows(N, k, seed)``."""
    if k > rows.shape[0]:
        raise BankError(f"{k} clusters > {rows.shape[0]} rows")
    cent = rows[initial_rows(rows.shape[0], k, seed).to(rows.device)].clone()
    labels = torch.full((rows.shape[0],), -1, dtype=torch.long, device=rows.device)
    for _ in range(iters):
        new = assign(rows, cent)
        if torch.equal(new, labels):
            break
        labels = new
        sums, counts = cluster_sums(rows, labels, k)
        cent = new_centroids(sums, counts, cent)
    return cent, labels


def initial_rows(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]


# Similarities computed per chunk of rows: the whole bank at once is N x k floats (1.28M rows x 10,000
# clusters: 51 GB), a chunk at most this many (1 GiB of fp32); the labels are the same.
ASSIGN_CHUNK_ELEMENTS = 1 << 28


def assign(rows: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Each row's nearest centroid (largest dot product: rows and centroids are unit vectors)."""
    if not len(rows):
        return torch.zeros(0, dtype=torch.long, device=rows.device)
    step = max(1, ASSIGN_CHUNK_ELEMENTS // max(1, len(centroids)))
    return torch.cat([(rows[s : s + step] @ centroids.t()).argmax(1) for s in range(0, len(rows), step)])


def cluster_sums(rows, labels, k):
    sums = torch.zeros(k, rows.shape[1], device=rows.device, dtype=rows.dtype).index_add_(0, labels, rows)
    return sums, torch.bincount(labels, minlength=k)


def new_centroids(sums, counts, previous):
    return torch.where(counts[:, None] > 0, F.normalize(sums, dim=1), previous)


class OnlineKMeans(nn.Module):
    centroids: torch.Tensor  # buffers, declared for type checkers
    labels: torch.Tensor
    counts: torch.Tensor
    initialized: torch.Tensor
    steps: torch.Tensor

    def __init__(self, num_clusters: int, bank: MemoryBank, seed: int = 0):
        super().__init__()
        if isinstance(num_clusters, bool) or not isinstance(num_clusters, int) or num_clusters < 1:
            raise BankError(f"num_clusters: expected an integer >= 1, got {num_clusters!r}")
        if num_clusters > bank.size:
            raise BankError(f"num_clusters {num_clusters} > {bank.size} bank rows")
        self.k, self.seed, self.shard = num_clusters, seed, bank.shard
        self.bank = [bank]  # a reference, not a submodule: the method owns the bank
        self.register_buffer("centroids", torch.zeros(num_clusters, bank.dim))
        self.register_buffer("labels", torch.zeros(len(bank.global_rows), dtype=torch.long), persistent=False)
        self.register_buffer("counts", torch.zeros(num_clusters, dtype=torch.long))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def rows(self) -> torch.Tensor:
        return self.bank[0].rows

    def _sums(self):
        sums, counts = cluster_sums(self.rows, self.labels, self.k)
        if self.shard.collective:
            dist.all_reduce_sum(sums)
            dist.all_reduce_sum(counts)
        return sums, counts

    @torch.no_grad()
    def initialize(self, iters: int = 100) -> None:
        """Global Lloyd over the whole bank until no label changes (at most ``iters`` rounds); the
        same result as ``lloyd`` on the gathered rows. Converged, so re-assigning a bank that has not
        moved changes no label (churn 0)."""
        cent = self.bank[0].fetch(initial_rows(self.bank[0].size, self.k, self.seed).to(self.rows.device))
        self.labels = torch.full_like(self.labels, -1)
        for _ in range(iters):
            new = assign(self.rows, cent)
            changed = (new != self.labels).sum().view(1)
            self.labels = new
            if self.shard.collective:
                dist.all_reduce_sum(changed)
            if int(changed) == 0:
                break
            sums, counts = self._sums()
            cent = new_centroids(sums, counts, cent)
        self.centroids, self.counts = cent, counts
        self.initialized.fill_(True)

    @torch.no_grad()
    def step(self, index: torch.Tensor) -> dict:
        """Re-assign the global batch ``index`` (the same on every worker), recompute centroids,
        re-seed empty clusters. Returns churn (fraction of the batch's samples whose cluster
        changed), clusters re-seeded and still empty."""
        self.bank[0].check(index)
        uniq = torch.unique(index)
        mine, slots = self.bank[0].owned(uniq)
        new = assign(self.rows[slots], self.centroids)
        changed = torch.stack([(new != self.labels[slots]).sum(), mine.sum()])
        if self.shard.collective:
            dist.all_reduce_sum(changed)
        self.labels[slots] = new
        sums, counts = self._sums()
        self.centroids = new_centroids(sums, counts, self.centroids)
        reseeded = 0
        for c in torch.nonzero(counts == 0).flatten().tolist():
            if not self._split_largest(c, counts):
                break
            reseeded += 1
        self.counts = counts
        self.steps += 1
        return {
            "churn": float(changed[0]) / max(1, int(changed[1])),
            "reseeded": reseeded,
            "empty": int((counts == 0).sum()),
        }

    def _split_largest(self, c: int, counts: torch.Tensor) -> bool:
        big = int(counts.argmax())
        if counts[big] < 2:
            return False
        bank = self.bank[0]
        u = hash_u32(
            self.seed,
            7,
            int(self.steps) * 100_003 + c,
            torch.zeros(1, dtype=torch.long, device=self.rows.device),
            bank.global_rows,
        )
        keys = make_keys(u, bank.global_rows, (self.labels == big).view(1, -1)).squeeze(0)
        best = keys.max().view(1) if len(keys) else torch.full((1,), -1, device=self.rows.device)
        if self.shard.collective:
            allbest = dist.all_gather_nograd(best)
            best = allbest.max().view(1)
        row = int((1 << 31) - 1 - (int(best) & ((1 << 31) - 1)))
        mine, slots = bank.owned(torch.tensor([row], device=self.rows.device))
        if bool(mine.any()):
            self.labels[slots] = c
        self.centroids[c] = bank.fetch(torch.tensor([row], device=self.rows.device))[0]
        counts[c], counts[big] = 1, counts[big] - 1
        return True

    @torch.no_grad()
    def labels_of(self, index: torch.Tensor) -> torch.Tensor:
        """Cluster labels of global ``index`` (sharded: a collective, the same index on every worker)."""
        self.bank[0].check(index)
        if not self.shard.collective:
            return self.labels[index]
        out = torch.zeros_like(index)
        mine, slots = self.bank[0].owned(index)
        out[mine] = self.labels[slots]
        return dist.all_reduce_sum(out)

    @torch.no_grad()
    def all_labels(self) -> torch.Tensor:
        """Every row's cluster [N] (a collective when sharded)."""
        return gather_sharded(self.labels, self.bank[0].size, self.shard)

    @torch.no_grad()
    def load_labels(self, labels: torch.Tensor) -> None:
        self.labels.copy_(labels[self.bank[0].global_rows.to(labels.device)].to(self.labels))

    def inertia(self) -> float:
        """Sum of 1 - cos(row, its centroid) over the whole bank: the spherical k-means objective."""
        part = (1 - (self.rows * self.centroids[self.labels]).sum(1)).sum().view(1).double()
        return float(dist.all_reduce_sum(part) if self.shard.collective else part)
