import math

import pytest
import torch

from raycl.eval import knn_predict, linear_probe
from raycl.optim import LARS, param_groups, warmup_cosine


def two_layer():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))


def test_lars_matches_hand_computed_update_with_exclusions_and_momentum():
    model = two_layer()
    lr, m, wd, eta = 0.5, 0.9, 0.01, 0.02
    opt = LARS(param_groups(model, wd), lr=lr, momentum=m, weight_decay=wd, trust_coefficient=eta)
    x = torch.randn(8, 3)
    bufs, ref = {}, {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(3):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        opt.step()
        for n, g in grads.items():
            w = ref[n]
            if w.ndim > 1:                     # weight matrices: weight decay + trust ratio
                u = g + wd * w
                u = u * (eta * w.norm() / u.norm())
            else:                              # biases, BN: plain momentum SGD
                u = g
            bufs[n] = u if n not in bufs else m * bufs[n] + u
            ref[n] = w - lr * bufs[n]
    for n, p in model.named_parameters():
        assert torch.allclose(p, ref[n], atol=1e-6), n


def test_lars_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="lr"):
        LARS(two_layer().parameters(), lr=-1)
    with pytest.raises(ValueError, match="trust_coefficient"):
        LARS(two_layer().parameters(), lr=1, trust_coefficient=0)


def test_warmup_then_cosine():
    f = lambda s: warmup_cosine(s, total_steps=110, warmup_steps=10, final_ratio=0.01)  # noqa: E731
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.01 + 0.99 * 0.5)
    assert f(110) == pytest.approx(0.01)
    assert all(f(s) >= f(s + 1) for s in range(10, 110))


def test_knn_matches_brute_force_vote():
    torch.manual_seed(0)
    tr, te = torch.randn(60, 5), torch.randn(9, 5)
    y = torch.randint(0, 3, (60,))
    k, t = 7, 0.1
    got = knn_predict(tr, y, te, k=k, temperature=t, chunk=4)
    trn, ten = torch.nn.functional.normalize(tr, dim=1), torch.nn.functional.normalize(te, dim=1)
    for i in range(9):
        sims = [(float(ten[i] @ trn[j]), int(y[j])) for j in range(60)]
        sims.sort(reverse=True)
        votes = [0.0] * 3
        for s, c in sims[:k]:
            votes[c] += math.exp(s / t)
        assert got[i].item() == max(range(3), key=lambda c: votes[c])


def test_linear_probe_separates_separable_data():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 10, generator=g) * 4
    y = torch.randint(0, 4, (400,), generator=g)
    x = centers[y] + torch.randn(400, 10, generator=g)
    assert linear_probe(x[:300], y[:300], x[300:], y[300:], epochs=10) > 0.95
    shuffled = y[torch.randperm(400, generator=g)]
    assert linear_probe(x[:300], shuffled[:300], x[300:], shuffled[300:], epochs=10) < 0.5
