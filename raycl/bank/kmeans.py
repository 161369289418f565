"""Online mini-batch k-means over the memory bank (InterCLR section 3.2; ODC's empty-cluster rule).

Global k-means once at the start; then every step the batch's rows are re-assigned to their
nearest centroid and each centroid is the (normalised) mean of the bank rows currently in it.
An empty cluster is re-seeded by splitting the largest one: it takes a random member row."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def lloyd(rows: torch.Tensor, k: int, iters: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical Lloyd k-means: (centroids [k, d], labels [N]). Initial centroids: k distinct rows."""
    if k > rows.shape[0]:
        raise ValueError(f"{k} clusters > {rows.shape[0]} rows")
    g = torch.Generator(device="cpu").manual_seed(seed)
    cent = rows[torch.randperm(rows.shape[0], generator=g)[:k].to(rows.device)].clone()
    labels = torch.zeros(rows.shape[0], dtype=torch.long, device=rows.device)
    for _ in range(iters):
        labels = (rows @ cent.t()).argmax(1)
        cent, _ = _means(rows, labels, k, cent)
    return cent, labels


def _means(rows, labels, k, previous):
    sums = torch.zeros(k, rows.shape[1], device=rows.device, dtype=rows.dtype).index_add_(0, labels, rows)
    counts = torch.bincount(labels, minlength=k)
    cent = torch.where(counts[:, None] > 0, F.normalize(sums, dim=1), previous)
    return cent, counts


class OnlineKMeans(nn.Module):
    def __init__(self, num_clusters: int, bank_size: int, dim: int, seed: int = 0):
        super().__init__()
        if num_clusters > bank_size:
            raise ValueError(f"{num_clusters} clusters > {bank_size} bank rows")
        self.k, self.seed = num_clusters, seed
        self.register_buffer("centroids", torch.zeros(num_clusters, dim))
        self.register_buffer("labels", torch.zeros(bank_size, dtype=torch.long))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def initialize(self, rows: torch.Tensor, iters: int = 20) -> None:
        self.centroids, self.labels = lloyd(rows, self.k, iters, self.seed)
        self.initialized.fill_(True)

    @torch.no_grad()
    def step(self, rows: torch.Tensor, index: torch.Tensor) -> dict:
        """Re-assign ``index``'s rows, recompute centroids, re-seed empty clusters. Returns stats."""
        old = self.labels[index].clone()
        self.labels[index] = (rows[index] @ self.centroids.t()).argmax(1)
        churn = (self.labels[index] != old).float().mean().item() if len(index) else 0.0
        self.centroids, counts = _means(rows, self.labels, self.k, self.centroids)
        reseeded = 0
        g = torch.Generator(device="cpu").manual_seed(self.seed + int(self.steps))
        for c in torch.nonzero(counts == 0).flatten().tolist():
            big = int(counts.argmax())
            members = torch.nonzero(self.labels == big).flatten()
            if len(members) < 2:
                break
            pick = members[torch.randint(len(members), (1,), generator=g).to(members.device)]
            self.labels[pick] = c
            self.centroids[c] = rows[pick].squeeze(0)
            counts[c], counts[big] = 1, counts[big] - 1
            reseeded += 1
        self.steps += 1
        return {"churn": churn, "reseeded": reseeded, "empty": int((counts == 0).sum())}

    def inertia(self, rows: torch.Tensor) -> float:
        """Sum of 1 - cos(row, its centroid): the spherical k-means objective."""
        return float((1 - (rows * self.centroids[self.labels]).sum(1)).sum())
