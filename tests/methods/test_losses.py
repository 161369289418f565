import math

import torch
import torch.nn.functional as F

from raycl.losses import nt_xent


def nt_xent_loop(z1, z2, tau):
    """Chen et al. 2020 eq. 1, one anchor at a time."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n2 = z.shape[0]
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        denom = sum(torch.exp(z[i] @ z[k] / tau) for k in range(n2) if k != i)
        total = total - torch.log(torch.exp(z[i] @ z[j] / tau) / denom)
    return total / n2


def test_nt_xent_matches_per_anchor_formula_forward_and_gradient():
    torch.manual_seed(0)
    a = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    got = nt_xent(a, b, 0.3)
    ref = nt_xent_loop(a, b, 0.3)
    assert torch.allclose(got, ref)
    ga = torch.autograd.grad(got, [a, b])
    gr = torch.autograd.grad(ref, [a, b])
    for x, y in zip(ga, gr):
        assert torch.allclose(x, y)


def test_anchor_rows_split_the_global_loss():
    """Two workers' losses over their own anchor rows average to the global loss."""
    torch.manual_seed(1)
    a, b = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)
    parts = [nt_xent(a, b, 0.5, anchor_rows=slice(0, 4)), nt_xent(a, b, 0.5, anchor_rows=slice(4, 8))]
    assert torch.allclose(sum(parts) / 2, nt_xent(a, b, 0.5))
    assert not torch.allclose(parts[0], parts[1])


def test_nt_xent_perfect_alignment_lower_bound():
    """Identical, mutually orthogonal pairs give the minimum for those similarities."""
    z = torch.eye(4, dtype=torch.float64)
    tau = 0.1
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 6 * math.exp(0)))
    assert abs(nt_xent(z, z, tau).item() - expected) < 1e-9


from raycl.losses import ddm_loss, info_nce, margin_nce, negative_cosine, supcon_loss, tcl_loss, tcl_per_anchor  # noqa: E402


def unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1).requires_grad_(True)


def tcl_loop(z, labels, tau, k1, k2):
    """Eq. 4.1-4.3 written anchor by anchor."""
    losses = []
    for i in range(len(z)):
        P = [p for p in range(len(z)) if p != i and labels[p] == labels[i]]
        N = [n for n in range(len(z)) if labels[n] != labels[i]]
        if not P:
            continue
        D = sum(torch.exp(z[i] @ z[p] / tau) for p in P) + k1 * sum(torch.exp(-z[i] @ z[p]) for p in P) \
            + k2 * sum(torch.exp(z[i] @ z[n] / tau) for n in N)
        losses.append(-sum(torch.log(torch.exp(z[i] @ z[p] / tau) / D) for p in P) / len(P))
    return sum(losses) / len(losses)


def supcon_loop(z, labels, tau):
    losses = []
    for i in range(len(z)):
        P = [p for p in range(len(z)) if p != i and labels[p] == labels[i]]
        if not P:
            continue
        denom = sum(torch.exp(z[i] @ z[a] / tau) for a in range(len(z)) if a != i)
        losses.append(-sum(torch.log(torch.exp(z[i] @ z[p] / tau) / denom) for p in P) / len(P))
    return sum(losses) / len(losses)


def nce_loop(q, kp, negs, tau, m=0.0):
    total = 0.0
    for b in range(len(q)):
        nb = negs if negs.dim() == 2 else negs[b]
        pos = torch.exp((q[b] @ kp[b] - m) / tau)
        total = total - torch.log(pos / (pos + sum(torch.exp(q[b] @ n / tau) for n in nb)))
    return total / len(q)


def check(got, ref, inputs):
    assert torch.allclose(got, ref), (got, ref)
    for a, b in zip(torch.autograd.grad(got, inputs), torch.autograd.grad(ref, inputs)):
        assert torch.allclose(a, b)


def test_tcl_and_supcon_match_their_formulas():
    z = unit(10, 6)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 0, 4])   # label 4 has no positive
    check(tcl_loss(z, labels, 0.3, 3.0, 1.5), tcl_loop(z, labels, 0.3, 3.0, 1.5), [z])
    check(supcon_loss(z, labels, 0.3), supcon_loop(z, labels, 0.3), [z])


def test_tcl_gradient_is_lemma_2_closed_form():
    """dL_i/dz_i = 1/tau [ sum_p z_p (P_ip - X_ip - Y_ip) + sum_n z_n P_in ]  (eq. 4.5-4.9)."""
    z = unit(9, 5, seed=3)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    tau, k1, k2 = 0.2, 4.0, 1.5
    per = tcl_per_anchor(z, labels, tau, k1, k2)
    zi = z.detach()
    for i in range(len(z)):
        (g,) = torch.autograd.grad(per[i], z, retain_graph=True)
        P = [p for p in range(9) if p != i and labels[p] == labels[i]]
        N = [n for n in range(9) if labels[n] != labels[i]]
        D = sum(torch.exp(zi[i] @ zi[p] / tau) for p in P) + k1 * sum(torch.exp(-zi[i] @ zi[p]) for p in P) \
            + k2 * sum(torch.exp(zi[i] @ zi[n] / tau) for n in N)
        closed = sum(zi[p] * (torch.exp(zi[i] @ zi[p] / tau) / D - 1 / len(P) - tau * k1 * torch.exp(-zi[i] @ zi[p]) / D)
                     for p in P) + sum(zi[n] * k2 * torch.exp(zi[i] @ zi[n] / tau) / D for n in N)
        assert torch.allclose(g[i], closed / tau)


def test_tcl_reduces_to_supcon_and_supcon_to_nt_xent():
    z = unit(8, 4, seed=5)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    assert torch.allclose(tcl_loss(z, labels, 0.5, 0.0, 1.0), supcon_loss(z, labels, 0.5))
    assert not torch.allclose(tcl_loss(z, labels, 0.5, 1.0, 1.0), supcon_loss(z, labels, 0.5))
    # one positive per anchor (two views, distinct images): SupCon = NT-Xent
    assert torch.allclose(supcon_loss(z, labels, 0.5), nt_xent(z[:4], z[4:], 0.5))


def test_tcl_is_stable_for_paper_k1_and_small_tau():
    z = unit(12, 8, seed=7)
    labels = torch.arange(12) % 4
    loss = tcl_loss(z, labels, 0.05, 5000.0, 1.0)
    assert torch.isfinite(loss)
    assert torch.allclose(loss, tcl_loop(z, labels, 0.05, 5000.0, 1.0))


def test_info_nce_and_margin_nce_match_loops_shared_and_per_query_negatives():
    q, kp = unit(5, 4, seed=1), unit(5, 4, seed=2)
    shared, per_q = unit(7, 4, seed=3), unit(5, 6, 4, seed=4)
    check(info_nce(q, kp, shared, 0.2), nce_loop(q, kp, shared, 0.2), [q, kp, shared])
    check(margin_nce(q, kp, per_q, 0.35, 0.2), nce_loop(q, kp, per_q, 0.2, 0.35), [q, kp, per_q])
    assert torch.allclose(margin_nce(q, kp, shared, 0.0, 0.2), info_nce(q, kp, shared, 0.2))


def test_margin_shifts_only_the_positive_logit():
    """MarginNCE(m) on (k+, negs) = InfoNCE with the positive's similarity lowered by m."""
    q, kp, negs = unit(4, 3, seed=8), unit(4, 3, seed=9), unit(6, 3, seed=10)
    m, tau = -0.5, 0.1
    pos = (q * kp).sum(1, keepdim=True) - m
    logits = torch.cat([pos, q @ negs.t()], 1) / tau
    ref = F.cross_entropy(logits, torch.zeros(4, dtype=torch.long))
    assert torch.allclose(margin_nce(q, kp, negs, m, tau), ref)
    assert margin_nce(q, kp, negs, 0.3, tau) > margin_nce(q, kp, negs, 0.0, tau)


def test_ddm_loss_formula_and_stop_gradient_on_weak():
    weak = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    strong = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    ref = 0.0
    for i in range(3):
        p = torch.exp(weak[i]) / torch.exp(weak[i]).sum()
        ps = torch.exp(strong[i]) / torch.exp(strong[i]).sum()
        ref = ref - (p.detach() * torch.log(ps)).sum()
    got = ddm_loss(weak, strong)
    assert torch.allclose(got, ref / 3)
    gw, gs = torch.autograd.grad(got, [weak, strong], allow_unused=True)
    assert gw is None or torch.count_nonzero(gw) == 0
    assert torch.allclose(gs, torch.autograd.grad(ref / 3, strong)[0])


def test_negative_cosine_stops_gradient_on_target():
    p = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    z = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    loss = negative_cosine(p, z)
    ref = -sum((p[i] @ z[i]) / (p[i].norm() * z[i].norm()) for i in range(4)) / 4
    assert torch.allclose(loss, ref)
    gp, gz = torch.autograd.grad(loss, [p, z], allow_unused=True)
    assert gz is None and gp is not None
    assert torch.allclose(negative_cosine(z, z), torch.tensor(-1.0, dtype=torch.float64))
