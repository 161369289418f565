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


@pytest.mark.parametrize("exclude", [True, False])
def test_plain_lars_on_model_parameters_excludes_bias_by_default(exclude):
    """``LARS(m.parameters(), ...)`` as the README shows it: the first step by hand for a Linear
    layer. Weight: u = g + wd w scaled by eta ||w|| / ||u||; bias: plain g (no decay, no trust)
    unless ``exclude_bias_and_norm=False``."""
    torch.manual_seed(1)
    lin = torch.nn.Linear(5, 3)
    lr, wd, eta = 0.4, 0.05, 0.01
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    opt = LARS(lin.parameters(), lr=lr, momentum=0.9, weight_decay=wd, trust_coefficient=eta,
               exclude_bias_and_norm=exclude)
    lin(torch.randn(7, 5)).pow(2).sum().backward()
    gw, gb = lin.weight.grad.clone(), lin.bias.grad.clone()
    opt.step()

    def adapted(w, g):
        u = g + wd * w
        return u * (eta * w.norm() / u.norm())

    assert torch.allclose(lin.weight, w0 - lr * adapted(w0, gw), atol=1e-7)
    assert torch.allclose(lin.bias, b0 - lr * (gb if exclude else adapted(b0, gb)), atol=1e-7)


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


def test_step_decay_with_warmup_steps():
    from raycl.optim import warmup_step_decay

    f = lambda s: warmup_step_decay(s, steps_per_epoch=10, milestones=[3, 5], gamma=0.1, warmup_steps=4)  # noqa: E731
    assert [f(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f(29) == 1.0 and f(30) == pytest.approx(0.1) and f(49) == pytest.approx(0.1)
    assert f(50) == pytest.approx(0.01) and f(99) == pytest.approx(0.01)


def test_build_schedule_from_config_uses_warmup_steps_and_final_lr():
    from raycl.config import apply_overrides, from_dict
    from raycl.optim import build_optimizer, build_schedule

    cfg = from_dict(apply_overrides({}, ["optim.warmup_steps=5", "optim.final_lr=0.003", "run.epochs=10",
                                          "data.batch_size=512"]))
    model = two_layer()
    opt = build_optimizer(model, cfg.optim, cfg.lr)
    sched = build_schedule(opt, cfg.optim, steps_per_epoch=10, epochs=10, peak_lr=cfg.lr)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(cfg.lr / 5) and lrs[4] == pytest.approx(cfg.lr) == pytest.approx(0.6)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.003)


def test_lars_exclude_patterns_and_bias_norm_switch():
    model = two_layer()   # 0: Linear(3,4), 1: BN(4), 2: Linear(4,2)
    groups = param_groups(model, 0.1, exclude=[r"^2\.weight$"])
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(groups[0]["params"]) == {id(model[0].weight)}
    assert id(model[2].weight) in ids(groups[1]["params"]) and groups[1]["lars_exclude"] is True
    assert groups[1]["weight_decay"] == 0.0
    all_in = param_groups(model, 0.1, exclude_bias_and_norm=False)
    assert len(all_in) == 1 and len(all_in[0]["params"]) == 6


def test_linear_probe_is_a_function_of_its_seed_not_the_global_rng():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(200, 8, generator=g), torch.randint(0, 3, (200,), generator=g)
    torch.manual_seed(5)
    a = linear_probe(x[:150], y[:150], x[150:], y[150:], epochs=2, seed=3)
    torch.manual_seed(6)
    b = linear_probe(x[:150], y[:150], x[150:], y[150:], epochs=2, seed=3)
    assert a == b
