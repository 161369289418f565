"""Which rows evaluation may use: only labeled ones (label >= 0; -1 means unknown).

Class ids are compacted to 0..C-1 over the training labels, so memory follows the number of
classes present, not the largest id."""

from __future__ import annotations

import torch


def labeled(feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    keep = labels >= 0
    return feats[keep], labels[keep]


def compact(train_labels: torch.Tensor, test_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(train ids, test ids, C): labels renumbered 0..C-1 by the sorted training classes; a test
    label absent from training becomes -1 (no prediction can match it)."""
    classes, train_ids = torch.unique(train_labels, return_inverse=True)
    pos = torch.searchsorted(classes, test_labels).clamp(max=max(len(classes) - 1, 0))
    hit = classes[pos] == test_labels if len(classes) else torch.zeros_like(test_labels, dtype=torch.bool)
    return train_ids, torch.where(hit, pos, torch.full_like(pos, -1)), len(classes)


def unlabeled_reason(train_labels: torch.Tensor, test_labels: torch.Tensor) -> str | None:
    """Why no labeled evaluation is possible, or None when it is."""
    if not bool((train_labels >= 0).any()):
        return "the training split has no labeled rows (every label is -1)"
    if not bool((test_labels >= 0).any()):
        return "the held-out split has no labeled rows (every label is -1)"
    return None
