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
