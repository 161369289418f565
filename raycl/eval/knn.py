"""Weighted kNN classifier on L2-normalised features (Wu et al. 2018), the usual SSL monitor:
cosine similarity, the k nearest training features vote with weight exp(sim / T).
Only labeled rows (label >= 0) take part, on both sides."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raycl.eval.labels import compact, labeled, unlabeled_reason


@torch.no_grad()
def knn_predict(
    train_feats,
    train_labels,
    test_feats,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    chunk: int = 1024,
) -> torch.Tensor:
    """Predicted class ids (of ``train_labels``, which must be 0..C-1) for every test row."""
    train_feats = F.normalize(train_feats.float(), dim=1)
    test_feats = F.normalize(test_feats.float(), dim=1)
    c = num_classes or int(train_labels.max()) + 1
    k = min(k, train_feats.shape[0])
    preds = []
    for s in range(0, test_feats.shape[0], chunk):
        sim = test_feats[s : s + chunk] @ train_feats.t()
        w, idx = sim.topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], c, device=sim.device)
        votes.scatter_add_(1, train_labels[idx], (w / temperature).exp())
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def knn_top1(
    train_feats, train_labels, test_feats, test_labels, k: int = 200, temperature: float = 0.1
) -> float | None:
    """Top-1 over the labeled test rows, voting with the labeled training rows; None when either
    side has no labeled row."""
    if unlabeled_reason(train_labels, test_labels):
        return None
    train_feats, train_labels = labeled(train_feats, train_labels)
    test_feats, test_labels = labeled(test_feats, test_labels)
    train_ids, test_ids, c = compact(train_labels, test_labels)
    pred = knn_predict(train_feats, train_ids, test_feats, k, temperature, num_classes=c)
    return (pred == test_ids).float().mean().item()


# -- kNN over training features split across workers (``raycl knn``) ---------------------------------
# Each worker holds the normalised features of its share of the training rows; for a chunk of queries
# it finds its own k nearest (``shard_topk``), the k-lists of all shards are gathered and merged
# (``merge_topk``: the k nearest of the union are the k nearest overall) and voted (``vote``), as
# ``knn_predict`` votes over one process's features.


@torch.no_grad()
def shard_topk(queries: torch.Tensor, shard: torch.Tensor, shard_labels: torch.Tensor, k: int):
    """(similarities [q, k], labels [q, k]) of the ``k`` rows of one shard nearest to each query
    (cosine: both sides L2-normalised); a shard of fewer than k rows pads with -inf and label -1."""
    take = min(k, shard.shape[0])
    sims, idx = (queries @ shard.t()).topk(take, dim=1) if take else (queries[:, :0], queries[:, :0].long())
    labels = shard_labels[idx]
    if take < k:
        pad = k - take
        sims = torch.cat([sims, sims.new_full((len(queries), pad), float("-inf"))], dim=1)
        labels = torch.cat([labels, labels.new_full((len(queries), pad), -1)], dim=1)
    return sims, labels


def merge_topk(sims: torch.Tensor, labels: torch.Tensor, k: int):
    """The ``k`` most similar of every query's candidates (sims, labels [q, shards * k])."""
    top, idx = sims.topk(k, dim=1)
    return top, labels.gather(1, idx)


def vote(sims: torch.Tensor, labels: torch.Tensor, classes: int, temperature: float, top: int = 5):
    """Class ids [q, min(top, classes)] ranked by the weighted vote sum exp(sim / T) (Wu et al.);
    padding (label -1) votes nothing."""
    weights = torch.where(labels >= 0, (sims / temperature).exp(), torch.zeros_like(sims))
    scores = torch.zeros(sims.shape[0], classes, device=sims.device)
    scores.scatter_add_(1, labels.clamp(min=0), weights)
    return scores.topk(min(top, classes), dim=1).indices
