"""Memory bank, online k-means and bank sampling against plain references."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from raycl.bank import MemoryBank, OnlineKMeans, lloyd, sample_negatives, sample_positives


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


def test_bank_bad_input():
    bank = MemoryBank(10, 4)
    with pytest.raises(IndexError, match="sample index 10 is outside"):
        bank.update(torch.tensor([1, 10]), unit(2, 4))
    with pytest.raises(ValueError, match="dimension 5"):
        bank.update(torch.tensor([1]), unit(1, 5))
    with pytest.raises(ValueError, match="clusters"):
        OnlineKMeans(11, 10, 4)


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
    rows = unit(50, 6, seed=3)
    km = OnlineKMeans(5, 50, 6)
    km.initialize(rows)
    km.labels[:] = 0            # force empty clusters: one batch row can refill one at most
    stats = km.step(rows, torch.tensor([0]))
    assert stats["reseeded"] >= 3 and stats["empty"] == 0
    idx = torch.arange(10)
    counts = torch.bincount(km.labels, minlength=5)
    assert (counts > 0).all() and counts.sum() == 50
    # batch rows went to their nearest centroid (computed before re-seeding moved any)
    km2 = OnlineKMeans(5, 50, 6)
    km2.initialize(rows)
    old_cent = km2.centroids.clone()
    km2.step(rows, idx)
    assert torch.equal(km2.labels[idx], (rows[idx] @ old_cent.t()).argmax(1))
    for c in range(5):
        members = rows[km2.labels == c]
        if len(members):
            assert torch.allclose(km2.centroids[c], F.normalize(members.sum(0), dim=0), atol=1e-6)


def test_negative_strategies():
    rows = unit(200, 8, seed=4)
    labels = torch.arange(200) % 5
    anchors, alab = unit(3, 8, seed=5), torch.tensor([0, 1, 2])
    g = torch.Generator().manual_seed(0)
    sim = anchors @ rows.t()
    other = labels.view(1, -1) != alab.view(-1, 1)
    hard = sample_negatives(anchors, rows, labels, alab, 7, "hard", g)
    ref = sim.masked_fill(~other, -2).topk(7, dim=1).indices
    assert torch.equal(hard.sort(1).values, ref.sort(1).values)
    m = math.ceil(0.1 * 160)
    near = sim.masked_fill(~other, -2).topk(m, dim=1).indices
    far = (-sim).masked_fill(~other, -2).topk(m, dim=1).indices
    seen = set()
    for _ in range(30):
        for strat in ("semi_hard", "random", "semi_easy"):
            got = sample_negatives(anchors, rows, labels, alab, 7, strat, g)
            assert bool(other.gather(1, got).all())                  # never the anchor's cluster
            assert all(len(set(r.tolist())) == 7 for r in got)       # distinct
            if strat == "semi_hard":
                assert all(set(got[i].tolist()) <= set(near[i].tolist()) for i in range(3))
            if strat == "semi_easy":
                assert all(set(got[i].tolist()) <= set(far[i].tolist()) for i in range(3))
            if strat == "random":
                seen |= set(got[0].tolist())
    assert len(seen) > 100      # random draws reach most of the 160 candidates
    with pytest.raises(ValueError, match="K=161"):
        sample_negatives(anchors, rows, labels, alab, 161, "random", g)
    with pytest.raises(ValueError, match="available"):
        sample_negatives(anchors, rows, labels, alab, 3, "hardest", g)


def test_positives_share_the_cluster_and_are_not_self():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    idx = torch.tensor([0, 2, 5])
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        pos = sample_positives(idx, labels, g)
        assert torch.equal(labels[pos], labels[idx])
        assert pos[0] == 1 and pos[1] in (3, 4) and pos[2] == 5    # a singleton cluster keeps itself
