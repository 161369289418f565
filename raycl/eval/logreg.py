"""Regularised multinomial logistic regression on frozen features, the regularisation chosen on a
held-out part of the training rows: the transfer protocol of Kornblith et al. (2019) that SimCLIC's
linear evaluation over 11 datasets follows.

For a strength C (scikit-learn's convention: larger C, weaker penalty), on standardised features x_i,

    minimise  1/2 ||W||_F^2  +  C * sum_i  -log softmax(W x_i + b)[y_i]          (b not penalised)

solved to convergence by full-batch L-BFGS in float64. ``select_and_fit`` tries each C of a grid on
a seeded split of the training rows, keeps the best validation top-1 (the stronger penalty on a tie),
refits on every training row and scores the held-out rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from raycl.eval.labels import compact, labeled, unlabeled_reason

# Kornblith et al. search 45 values over 1e-6..1e5; 12 over the same range cost a quarter as much.
DEFAULT_GRID = tuple(float(c) for c in np.logspace(-6, 5, 12))


def fit_logreg(
    x: torch.Tensor,
    y: torch.Tensor,
    classes: int,
    strength: float,
    init=None,
    max_iter: int = 100,
    tolerance: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) minimising the objective above for C = ``strength``; ``init`` warm-starts from (W, b).
    Stops when every gradient entry of the objective / (C n) is below ``tolerance``, or after
    ``max_iter`` L-BFGS iterations (scikit-learn's default budget: weakly penalised fits on
    ill-conditioned features, such as raw pixels, use all of it)."""
    x = x.double()
    weight = torch.zeros(classes, x.shape[1], dtype=torch.float64) if init is None else init[0].clone()
    bias = torch.zeros(classes, dtype=torch.float64) if init is None else init[1].clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    # Divided by C * n: the same minimiser, at a scale L-BFGS's tolerances suit for every C.
    scale = 1.0 / (strength * len(x))
    opt = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, tolerance_grad=tolerance,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + 0.5 * scale * weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return weight.detach(), bias.detach()


def accuracy(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    return ((x.double() @ weight.T + bias).argmax(1) == y).double().mean().item() if len(y) else 0.0


def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Every set scaled by the training rows' mean and standard deviation (constant columns kept at 0)."""
    mean, std = train.double().mean(0), train.double().std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return [(t.double() - mean) / std for t in (train, *others)]


def select_and_fit(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    grid: Sequence[float] = DEFAULT_GRID,
    val_fraction: float = 0.2,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict | None:
    """``logreg_top1`` on the test rows with the C (``logreg_c``) whose fit on 1 - ``val_fraction``
    of the training rows scored best (``logreg_val_top1``) on the rest; None when either side has no
    labeled row. ``progress(values tried, values)`` after each C."""
    if unlabeled_reason(train_labels, test_labels):
        return None
    train_feats, train_labels = labeled(train_feats, train_labels)
    test_feats, test_labels = labeled(test_feats, test_labels)
    train_labels, test_labels, classes = compact(train_labels, test_labels)
    order = torch.randperm(len(train_feats), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(val_fraction * len(order))))
    fit_rows, val_rows = order[n_val:], order[:n_val]
    x_fit, x_val = standardise(train_feats[fit_rows], train_feats[val_rows])
    scores, fits, init = [], {}, None
    for i, strength in enumerate(sorted(grid)):  # strongest penalty first: each fit warm-starts the next
        init = fits[strength] = fit_logreg(x_fit, train_labels[fit_rows], classes, strength, init)
        scores.append((accuracy(*init, x_val, train_labels[val_rows]), -strength))
        if progress is not None:
            progress(i + 1, len(grid))
    best_val, neg_c = max(scores)
    x_train, x_test = standardise(train_feats, test_feats)
    weight, bias = fit_logreg(x_train, train_labels, classes, -neg_c, init=fits[-neg_c])
    return {"logreg_top1": accuracy(weight, bias, x_test, test_labels), "logreg_c": -neg_c, "logreg_val_top1": best_val}
