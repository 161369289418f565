"""Linear probe: a linear classifier trained on frozen, pre-extracted backbone features."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from raycl.eval.labels import compact, labeled, unlabeled_reason


def linear_probe(
    train_feats,
    train_labels,
    test_feats,
    test_labels,
    epochs: int = 30,
    lr: float = 0.1,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> float | None:
    """Standardise features with training statistics, train softmax regression with SGD + cosine
    lr, return top-1 on the test features. Only labeled rows (label >= 0) are used; None when
    either side has none. ``progress(epochs done, epochs)`` is called after each epoch."""
    if unlabeled_reason(train_labels, test_labels):
        return None
    train_feats, train_labels = labeled(train_feats, train_labels)
    test_feats, test_labels = labeled(test_feats, test_labels)
    train_labels, test_labels, c = compact(train_labels, test_labels)
    g = torch.Generator().manual_seed(seed)
    mean, std = train_feats.mean(0), train_feats.std(0) + 1e-6
    xtr, xte = (train_feats - mean) / std, (test_feats - mean) / std
    with torch.random.fork_rng():  # the classifier's init, like the batch order, comes from seed
        torch.manual_seed(seed)
        clf = torch.nn.Linear(xtr.shape[1], c)
    opt = torch.optim.SGD(clf.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    steps = epochs * ((len(xtr) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for epoch in range(epochs):
        perm = torch.randperm(len(xtr), generator=g)
        for s in range(0, len(xtr), batch_size):
            i = perm[s : s + batch_size]
            loss = F.cross_entropy(clf(xtr[i]), train_labels[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if progress is not None:
            progress(epoch + 1, epochs)
    with torch.no_grad():
        return (clf(xte).argmax(1) == test_labels).float().mean().item()
