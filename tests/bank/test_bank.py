"""Memory bank, online k-means and bank sampling against plain references."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from raycl.bank import MemoryBank, OnlineKMeans, lloyd, sample_negatives


def unit(n, d, seed=0):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_bank_momentum_update_and_duplicates():
    bank = MemoryBank(10, 4, momentum=0.5)
    before = bank.rows.clone()
    idx = torch.tensor([2, 7, 2])
    v = unit(3, 4, seed=1)
    bank.update(idx, v)
    expect7 = F.normalize(0.5 * before[7] + 0.5 * v[1], dim=0)
    expect2 = F.normalize(0.5 * before[2] + 0.5 * (v[0] + v[2]) / 2, dim=0)  # duplicates: their mean, once
    assert torch.allclose(bank.rows[7], expect7) and torch.allclose(bank.rows[2], expect2)
    untouched = [i for i in range(10) if i not in (2, 7)]
    assert torch.equal(bank.rows[untouched], before[untouched])


def test_bank_momentum_is_eq1_at_w_other_than_half():
    """InterCLR eq. 1, v <- normalize((1 - w) v + w v_new), at w = 0.3: swapping w and 1 - w fails."""
    bank = MemoryBank(6, 4, momentum=0.3)
    before = bank.rows.clone()
    v = unit(1, 4, seed=2)
    bank.update(torch.tensor([4]), v)
    expect = (0.7 * before[4] + 0.3 * v[0])
    assert torch.allclose(bank.rows[4], expect / expect.norm(), atol=1e-6)
    swapped = 0.3 * before[4] + 0.7 * v[0]
    assert not torch.allclose(bank.rows[4], swapped / swapped.norm(), atol=1e-3)


def test_bank_bad_input():
    bank = MemoryBank(10, 4)
    with pytest.raises(IndexError, match="sample index 10 is outside"):
        bank.update(torch.tensor([1, 10]), unit(2, 4))
    with pytest.raises(ValueError, match="dimension 5"):
        bank.update(torch.tensor([1]), unit(1, 5))
    with pytest.raises(ValueError, match="clusters"):
        OnlineKMeans(11, bank)


def lloyd_numpy(x, init, iters):
    """A plain spherical Lloyd k-means, written independently."""
    c = init.copy()
    for _ in range(iters):
        lab = np.argmax(x @ c.T, axis=1)
        for j in range(len(c)):
            members = x[lab == j]
            if len(members):
                s = members.sum(0)
                c[j] = s / np.linalg.norm(s)
    lab = np.argmax(x @ c.T, axis=1)
    return c, lab


def test_lloyd_matches_plain_reference_inertia():
    x = unit(300, 8, seed=2)
    cent, labels = lloyd(x, 6, iters=15, seed=0)
    init = x[torch.randperm(300, generator=torch.Generator().manual_seed(0))[:6]].numpy()
    rc, rl = lloyd_numpy(x.numpy().astype(np.float64), init.astype(np.float64), 15)
    ours = float((1 - (x * cent[labels]).sum(1)).sum())
    ref = float((1 - (x.numpy() * rc[rl]).sum(1)).sum())
    assert abs(ours - ref) <= 0.01 * ref


def test_online_step_assigns_recomputes_and_reseeds():
    bank = MemoryBank(50, 6, seed=3)
    km = OnlineKMeans(5, bank)
    km.initialize()
    km.labels[:] = 0            # force empty clusters: one batch row can refill one at most
    stats = km.step(torch.tensor([0]))
    assert stats["reseeded"] >= 3 and stats["empty"] == 0
    counts = torch.bincount(km.labels, minlength=5)
    assert (counts > 0).all() and counts.sum() == 50 and torch.equal(counts, km.counts)
    # batch rows went to their nearest centroid (computed before re-seeding moved any)
    bank2 = MemoryBank(50, 6, seed=3)
    km2 = OnlineKMeans(5, bank2)
    km2.initialize()
    old_cent, idx, rows = km2.centroids.clone(), torch.arange(10), bank2.rows
    km2.labels[:3] = (km2.labels[:3] + 1) % 5        # these 3 must move back to their nearest centroid
    old_labels = km2.labels[idx].clone()
    stats = km2.step(idx)
    assert torch.equal(km2.labels[idx], (rows[idx] @ old_cent.t()).argmax(1))
    assert stats["churn"] == pytest.approx((km2.labels[idx] != old_labels).double().mean().item()) and stats["churn"] >= 0.3
    for c in range(5):
        members = rows[km2.labels == c]
        if len(members):
            assert torch.allclose(km2.centroids[c], F.normalize(members.sum(0), dim=0), atol=1e-6)
    # initialisation is the single-process Lloyd on the same rows
    cent, labels = lloyd(rows, 5)
    km3 = OnlineKMeans(5, bank2)
    km3.initialize()
    assert torch.equal(km3.labels, labels) and torch.allclose(km3.centroids, cent)


def test_kmeans_inertia_within_1_percent_of_plain_lloyd():
    bank = MemoryBank(400, 8, seed=6)
    km = OnlineKMeans(10, bank)
    km.initialize(iters=15)
    x = bank.rows.numpy().astype(np.float64)
    init = x[torch.randperm(400, generator=torch.Generator().manual_seed(0))[:10].numpy()]
    rc, rl = lloyd_numpy(x, init, 15)
    ref = float((1 - (x * rc[rl]).sum(1)).sum())
    assert abs(km.inertia() - ref) <= 0.01 * ref


def test_selection_is_exact_top_k():
    from raycl.bank.select import float_u32, make_keys, top_k_mask

    sim = torch.randn(4, 300)
    valid = torch.rand(4, 300) > 0.3
    mask = top_k_mask(make_keys(float_u32(sim), torch.arange(300), valid), 17, False)
    ref = sim.masked_fill(~valid, -1e9).topk(17, dim=1).indices
    for a in range(4):
        assert set(mask[a].nonzero().flatten().tolist()) == set(ref[a].tolist())


def test_negative_strategies():
    rows = unit(200, 8, seed=4)
    labels = torch.arange(200) % 5
    anchors, alab = unit(3, 8, seed=5), torch.tensor([0, 1, 2])
    sim = anchors @ rows.t()
    other = labels.view(1, -1) != alab.view(-1, 1)
    hard = sample_negatives(anchors, rows, labels, alab, 7, "hard")
    ref = sim.masked_fill(~other, -2).topk(7, dim=1).indices
    assert torch.equal(hard.sort(1).values, ref.sort(1).values)
    m = math.ceil(0.1 * 160)
    near = sim.masked_fill(~other, -2).topk(m, dim=1).indices
    far = (-sim).masked_fill(~other, -2).topk(m, dim=1).indices
    seen, seen_near = set(), set()
    for step in range(40):
        for strat in ("semi_hard", "random", "semi_easy"):
            got = sample_negatives(anchors, rows, labels, alab, 7, strat, step=step)
            assert bool(other.gather(1, got).all())                  # never the anchor's cluster
            assert all(len(set(r.tolist())) == 7 for r in got)       # distinct
            if strat == "semi_hard":
                assert all(set(got[i].tolist()) <= set(near[i].tolist()) for i in range(3))
                seen_near |= set(got[0].tolist())
            if strat == "semi_easy":
                assert all(set(got[i].tolist()) <= set(far[i].tolist()) for i in range(3))
            if strat == "random":
                seen |= set(got[0].tolist())
    for step in range(40, 200):
        seen |= set(sample_negatives(anchors, rows, labels, alab, 7, "random", step=step)[0].tolist())
    assert len(seen) == 160                  # every candidate is reachable
    assert seen_near == set(near[0].tolist())
    with pytest.raises(ValueError, match="K=161"):
        sample_negatives(anchors, rows, labels, alab, 161, "random")
    with pytest.raises(ValueError, match="available"):
        sample_negatives(anchors, rows, labels, alab, 3, "hardest")


def test_random_draws_are_uniform():
    """Chi-square over 160 candidates x 4,000 draws of 7."""
    rows, labels = unit(200, 8, seed=4), torch.arange(200) % 5
    anchors, alab = unit(1, 8, seed=5), torch.tensor([0])
    hits = torch.zeros(200)
    for step in range(4000):
        hits.index_add_(0, sample_negatives(anchors, rows, labels, alab, 7, "random", step=step)[0], torch.ones(7))
    cand = hits[labels != 0]
    expected = 4000 * 7 / 160
    chi2 = float(((cand - expected) ** 2 / expected).sum())
    assert hits[labels == 0].sum() == 0 and chi2 < 159 + 5 * (2 * 159) ** 0.5


def test_positives_share_the_cluster_and_are_not_self():
    from raycl.bank import inter_positives

    bank = MemoryBank(6, 4)
    km = OnlineKMeans(3, bank)
    km.labels = torch.tensor([0, 0, 1, 1, 1, 2])
    idx = torch.tensor([0, 2, 5])
    seen = set()
    for step in range(30):
        pos = inter_positives(bank, km, idx, km.labels[idx], 0, step)
        assert torch.equal(km.labels[pos], km.labels[idx])
        assert pos[0] == 1 and pos[1] in (3, 4) and pos[2] == 5    # a singleton cluster keeps itself
        seen.add(int(pos[1]))
    assert seen == {3, 4}


def test_bank_logsumexp_margin_nce_equals_explicit_negatives():
    from raycl.bank import bank_logsumexp
    from raycl.bank.select import hash_u32, make_keys, top_k_mask
    from raycl.losses import margin_nce, margin_nce_lse

    bank = MemoryBank(64, 8, seed=1)
    bank.rows = bank.rows.double()
    q = unit(5, 8, seed=2).double().requires_grad_(True)
    mask = top_k_mask(make_keys(hash_u32(0, 1, 0, torch.arange(5), torch.arange(64)), torch.arange(64),
                                torch.ones(5, 64, dtype=torch.bool)), 9, False)
    pos = unit(5, 8, seed=3).double()
    loss = margin_nce_lse(q, pos, bank_logsumexp(q, bank, mask, 0.2), -0.5, 0.2)
    (gq,) = torch.autograd.grad(loss, q)
    q2 = q.detach().clone().requires_grad_(True)
    negs = torch.stack([bank.rows[m] for m in mask])             # [5, 9, 8]
    ref = margin_nce(q2, pos, negs, -0.5, 0.2)
    ref.backward()
    assert torch.allclose(loss, ref) and torch.allclose(gq, q2.grad)


def test_reassigning_a_bank_that_has_not_moved_gives_churn_zero():
    """k-means starts converged: steps that re-assign rows which did not change move no label.
    Once rows move (a bank update), the same steps report the changed labels."""
    g = torch.Generator().manual_seed(4)
    centres = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    rows = F.normalize(centres[torch.arange(120) % 6] + 0.3 * torch.randn(120, 8, generator=g), dim=1)
    bank = MemoryBank(120, 8)
    bank.write(torch.arange(120), rows)
    km = OnlineKMeans(6, bank)
    km.initialize()
    assert (km.counts > 0).all()
    for s in range(0, 120, 20):
        assert km.step(torch.arange(s, s + 20))["churn"] == 0.0
    before = km.labels.clone()
    bank.update(torch.arange(0, 40), F.normalize(torch.randn(40, 8, generator=g), dim=1))
    stats = km.step(torch.arange(0, 40))
    moved = (km.labels[:40] != before[:40]).double().mean().item()
    assert stats["churn"] == pytest.approx(moved) and moved > 0.1


def test_bank_write_sets_rows_without_momentum():
    bank = MemoryBank(10, 4, momentum=0.5)
    v = unit(3, 4, seed=5)
    before = bank.rows.clone()
    bank.write(torch.tensor([1, 4, 9]), 2 * v)
    assert torch.allclose(bank.rows[[1, 4, 9]], v) and torch.equal(bank.rows[[0, 2]], before[[0, 2]])


def test_assignment_in_chunks_equals_the_whole_similarity_matrix(monkeypatch):
    """The bank's rows are assigned a chunk at a time (1.28M x 10,000 similarities at once would be 51 GB);
    with a chunk of 7 rows the labels equal argmax over the whole matrix."""
    from raycl.bank import kmeans

    g = torch.Generator().manual_seed(0)
    rows = torch.nn.functional.normalize(torch.randn(100, 16, generator=g), dim=1)
    cent = torch.nn.functional.normalize(torch.randn(9, 16, generator=g), dim=1)
    whole = (rows @ cent.t()).argmax(1)
    monkeypatch.setattr(kmeans, "ASSIGN_CHUNK_ELEMENTS", 7 * 9)
    assert torch.equal(kmeans.assign(rows, cent), whole)
    assert kmeans.assign(rows[:0], cent).shape == (0,)
