"""`raycl eval --protocol logreg`: L2-regularised multinomial logistic regression on frozen features,
its strength chosen on held-out training rows (Kornblith et al.), checked against scikit-learn's
LogisticRegression on the same features: the fit, the choice of C, and the command end to end."""
import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from raycl.eval.logreg import DEFAULT_GRID, fit_logreg, select_and_fit, standardise
from test_export import checkpoint


def blobs(n, d=24, classes=4, spread=1.6, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, d, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return centers[y] + spread * torch.randn(n, d, generator=g), y


def sklearn_fit(x, y, strength, max_iter=20_000):
    return LogisticRegression(C=strength, tol=1e-10, max_iter=max_iter).fit(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("strength", [1e-3, 0.1, 10.0])
def test_the_fit_is_scikit_learns_multinomial_logistic_regression(strength):
    x, y = blobs(500)
    (xs,) = standardise(x)
    weight, bias = fit_logreg(xs, y, 4, strength, max_iter=1000, tolerance=1e-10)   # to convergence
    ref = sklearn_fit(xs, y, strength)
    scale = np.abs(ref.coef_).max()
    assert np.abs(weight.numpy() - ref.coef_).max() < 1e-4 * max(1.0, scale)
    assert np.abs(bias.numpy() - ref.intercept_).max() < 1e-4 * max(1.0, scale)


def moments(x):
    std = x.std(0, ddof=1)
    return x.mean(0), np.where(std > 0, std, 1.0)   # a dead ReLU's constant feature stays 0, not NaN


def sklearn_select(train_x, train_y, test_x, test_y, grid, val_fraction, seed):
    """The same rule written with scikit-learn: split (the same seeded rows), try each C, keep the
    best validation accuracy (the smaller C on a tie), refit on all training rows."""
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed)).numpy()
    n_val = max(1, int(round(val_fraction * len(order))))
    fit, val = order[n_val:], order[:n_val]
    mean, std = moments(train_x[fit])
    scores = [(sklearn_fit((train_x[fit] - mean) / std, train_y[fit], c).score((train_x[val] - mean) / std,
                                                                               train_y[val]), -c) for c in grid]
    best, neg_c = max(scores)
    mean, std = moments(train_x)
    test_top1 = sklearn_fit((train_x - mean) / std, train_y, -neg_c).score((test_x - mean) / std, test_y)
    return -neg_c, best, test_top1


def test_the_strength_chosen_on_held_out_training_rows_is_scikit_learns_choice():
    x, y = blobs(700, d=40, spread=3.0)
    grid = [1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0]
    ours = select_and_fit(x[:500], y[:500], x[500:], y[500:], grid=grid, val_fraction=0.25, seed=3)
    c, val_top1, test_top1 = sklearn_select(x[:500].numpy().astype(np.float64), y[:500].numpy(),
                                            x[500:].numpy().astype(np.float64), y[500:].numpy(), grid, 0.25, 3)
    assert ours["logreg_c"] == c and ours["logreg_val_top1"] == pytest.approx(val_top1, abs=1e-9)
    assert ours["logreg_top1"] == pytest.approx(test_top1, abs=1.01 / 200)   # one row at most, ties aside
    assert 0.3 < ours["logreg_top1"] < 1.0          # neither trivial nor separable: the choice of C matters


def test_unlabeled_rows_are_left_out_and_no_labels_means_no_result():
    x, y = blobs(300)
    y_some = y.clone()
    y_some[::3] = -1
    with_unknown = select_and_fit(x[:200], y_some[:200], x[200:], y[200:], grid=[0.1, 1.0])
    keep = y_some[:200] >= 0
    only_known = select_and_fit(x[:200][keep], y[:200][keep], x[200:], y[200:], grid=[0.1, 1.0])
    assert with_unknown == only_known
    assert select_and_fit(x[:200], torch.full((200,), -1), x[200:], y[200:]) is None


def test_raycl_eval_protocol_logreg_equals_scikit_learn_on_the_checkpoints_features(tmp_path, capsys):
    from raycl.cli import main
    from raycl.data import build_sources
    from raycl.eval import effective_rank, extract

    folder, cfg, method = checkpoint(tmp_path, "model.width=8", "data.num_samples=320", "data.eval_fraction=0.25")
    assert main(["eval", str(folder), "--protocol", "knn,logreg,rank", "--no-floors"]) == 0
    *_, header, encoder_row, payload = capsys.readouterr().out.strip().splitlines()
    out = json.loads(payload)
    assert header.split() == ["kNN", "top-1", "logreg", "top-1", "effective", "rank"]
    assert encoder_row.startswith("encoder")
    train_src, eval_src = build_sources(cfg)
    seed = cfg.run.seed
    tr, tr_y = extract(method.encoder(), train_src, max_rows=cfg.eval.max_train_samples, seed=seed)
    te, te_y = extract(method.encoder(), eval_src, max_rows=cfg.eval.max_eval_samples, seed=seed)
    c, val_top1, test_top1 = sklearn_select(tr.double().numpy(), tr_y.numpy(), te.double().numpy(), te_y.numpy(),
                                            DEFAULT_GRID, 0.2, seed)
    assert out["logreg_c"] == c
    assert out["logreg_top1"] == pytest.approx(test_top1, abs=1.01 / len(te_y))
    assert "linear_probe_top1" not in out and out["knn_top1"] is not None
    assert out["effective_rank"] == pytest.approx(effective_rank(te), rel=1e-6)   # of the held-out features
