import pytest
import torch
import torch.nn.functional as F

from raycl.config import apply_overrides, from_dict
from raycl.errors import ConfigError
from raycl.losses import nt_xent, supcon_loss, tcl_loss, tcl_per_anchor
from raycl.methods import REGISTRY, MethodBatch, build_method

SMALL = ["model.width=8", "model.proj_hidden_dim=16", "model.proj_out_dim=8"]


def cfg(*overrides):
    return from_dict(apply_overrides({}, SMALL + list(overrides)))


def batch(n_views, b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    views = [torch.randn(b, 1, 12, 12, generator=g) for _ in range(n_views)]
    return MethodBatch(views, torch.arange(100, 100 + b), torch.tensor([0, 1, 0, 2, 1, 0][:b]))


def embed(method, b):
    with torch.no_grad():
        return F.normalize(method.projector(method.backbone(torch.cat(b.views))), dim=1)


def test_registry_names():
    assert {"simclr", "supcon", "tcl"} <= set(REGISTRY)
    assert all(REGISTRY[k].name == k for k in REGISTRY)


@pytest.mark.parametrize("name, overrides, n_views, key, k1, k2", [
    ("supcon", [], 2, "labels", 0.0, 1.0),
    ("tcl", ["method.supervised=true", "method.k1=4000", "method.k2=1"], 2, "labels", 4000.0, 1.0),
    ("tcl", ["method.k1=1", "method.k2=1.5"], 3, "index", 1.0, 1.5),
])
def test_supervised_family_losses(name, overrides, n_views, key, k1, k2):
    c = cfg(f"method.name={name}", "method.temperature=0.1", *overrides)
    m = build_method(c, 1).eval()     # eval: BN statistics equal in both computations
    assert m.n_views == n_views
    b = batch(n_views)
    loss, _ = m(b)
    z = embed(m, b)
    labels = getattr(b, key).repeat(n_views)
    assert torch.allclose(loss, tcl_loss(z, labels, 0.1, k1, k2), atol=1e-6)
    if name == "supcon":
        assert torch.allclose(loss, supcon_loss(z, labels, 0.1), atol=1e-6)
    loss.backward()
    assert m.backbone.conv1.weight.grad.abs().sum() > 0


def test_simclr_method_is_nt_xent():
    m = build_method(cfg(), 1).eval()
    b = batch(2)
    loss, _ = m(b)
    with torch.no_grad():
        z = m.projector(m.backbone(torch.cat(b.views)))
    assert torch.allclose(loss, nt_xent(z[:6], z[6:], 0.5), atol=1e-6)


def test_anchor_slices_average_to_the_whole_loss():
    z = F.normalize(torch.randn(12, 5, dtype=torch.float64), dim=1)
    labels = torch.arange(12) % 4
    halves = [tcl_per_anchor(z, labels, 0.2, 2.0, 1.5, anchors=s).mean() for s in (slice(0, 6), slice(6, 12))]
    assert torch.allclose(sum(halves) / 2, tcl_loss(z, labels, 0.2, 2.0, 1.5))


def test_tcl_k_validation():
    with pytest.raises(ConfigError, match="method.k1"):
        cfg("method.name=tcl", "method.k1=0.5")
    with pytest.raises(ConfigError, match="method.k2"):
        cfg("method.name=tcl", "method.k2=0")


def test_moco_v2_step_by_the_pseudocode():
    c = cfg("method.name=moco_v2", "method.queue_size=10", "method.key_momentum=0.9", "method.temperature=0.2")
    m = build_method(c, 1).eval()
    with torch.no_grad():     # make the key encoder differ from the query encoder
        for p in m.key_backbone.parameters():
            p.add_(0.01)
    old_key = [p.clone() for p in m.key_backbone.parameters()]
    queue0, b = m.queue.clone(), batch(2)
    loss, _ = m(b)
    # momentum update
    for pk, pk0, pq in zip(m.key_backbone.parameters(), old_key, m.backbone.parameters()):
        assert torch.allclose(pk, 0.9 * pk0 + 0.1 * pq)
        assert not pk.requires_grad
    with torch.no_grad():
        q = F.normalize(m.projector(m.backbone(b.views[0])), dim=1)
        k = F.normalize(m.key_projector(m.key_backbone(b.views[1])), dim=1)
    pos = (q * k).sum(1, keepdim=True)
    ref = F.cross_entropy(torch.cat([pos, q @ queue0.t()], 1) / 0.2, torch.zeros(6, dtype=torch.long))
    assert torch.allclose(loss, ref, atol=1e-6)
    # the keys were enqueued at the pointer, the oldest entries replaced, wrapping around
    assert torch.allclose(m.queue[:6], k, atol=1e-6) and torch.equal(m.queue[6:], queue0[6:])
    m(batch(2, seed=1))
    assert int(m.queue_ptr) == 2 and not torch.allclose(m.queue[:2], k[:2])
    loss.backward()
    assert m.backbone.conv1.weight.grad is not None and m.key_backbone.conv1.weight.grad is None


def test_simclic_perturbations():
    from raycl.methods.simclic import perturb_dropout, perturb_history, perturb_noise

    torch.manual_seed(0)
    z = torch.randn(64, 32)
    d = perturb_noise(z, 0.5) - z
    assert torch.allclose(d.norm(dim=1), torch.full((64,), 0.5), atol=1e-5)
    assert torch.all((torch.sign(d) == torch.sign(z)) | (d == 0))
    dropped = perturb_dropout(z, 0.25)
    kept = dropped != 0
    assert 0.7 < kept.float().mean() < 0.8 and torch.equal(dropped[kept], z[kept])
    prev = torch.randn(64, 32)
    assert torch.allclose(perturb_history(z, prev, 0.3), 0.3 * prev + 0.7 * z)


def test_simclic_history_loss_and_store():
    c = cfg("method.name=simclic", "method.perturbation=history", "method.bank_size=200", "method.history_tau=0.4")
    m = build_method(c, 1)
    assert m.n_views == 1 and [v.augment for v in m.views()] == ["none"]
    b = batch(1)
    m.eval()
    loss, _ = m(b)           # eval: nothing is stored, and with no history both targets are z
    with torch.no_grad():
        z = m.projector(m.backbone(b.views[0]))
        p = m.predictor(z)
    assert torch.allclose(loss, -F.cosine_similarity(p, z).mean(), atol=1e-6)
    assert not m.seen.any()
    m.train()
    m(b)
    assert m.seen[b.index].all() and m.seen.sum() == 6
    stored = m.history[b.index].clone()
    m.eval()
    loss2, _ = m(b)
    with torch.no_grad():
        z = m.projector(m.backbone(b.views[0]))
        p = m.predictor(z)
        target = 0.4 * stored + 0.6 * z
    assert torch.allclose(loss2, -F.cosine_similarity(p, target).mean(), atol=1e-5)
    with pytest.raises(ConfigError, match="method.bank_size"):
        cfg("method.name=simclic", "method.perturbation=history")


def test_simclic_gradient_flows_only_through_predictor_branch():
    m = build_method(cfg("method.name=simclic", "method.perturbation=noise"), 1).train()
    loss, _ = m(batch(1))
    loss.backward()
    assert m.predictor[0].weight.grad.abs().sum() > 0 and m.backbone.conv1.weight.grad.abs().sum() > 0
    assert -1.0 <= loss.item() <= 1.0


def test_imclr_concatenates_along_width_with_multi_hot_targets():
    from raycl.methods.imclr import concat_width, soft_cross_entropy

    m = build_method(cfg("method.name=imclr", "method.concat_k=3", "method.num_classes=4"), 1).eval()
    b = batch(1)
    torch.manual_seed(7)
    loss, _ = m(b)
    torch.manual_seed(7)
    perms = [torch.arange(6)] + [torch.randperm(6) for _ in range(2)]
    x = b.views[0]
    xk = concat_width([x[p] for p in perms])
    assert xk.shape == (6, 1, 12, 36)
    target = sum(F.one_hot(b.labels[p], 4).float() for p in perms) / 3
    assert torch.allclose(target.sum(1), torch.ones(6))
    with torch.no_grad():
        ref = soft_cross_entropy(m.classifier(m.backbone(xk)), target)
    assert torch.allclose(loss, ref, atol=1e-6)
    assert torch.allclose(m.classify(x), m.classifier(m.backbone(torch.cat([x, x, x], dim=3))))


def test_supervised_ce_is_imclr_with_k_1_and_labels_are_checked():
    from raycl.errors import DataError

    m = build_method(cfg("method.name=supervised_ce", "method.num_classes=4"), 1).eval()
    b = batch(1)
    loss, _ = m(b)
    with torch.no_grad():
        ref = F.cross_entropy(m.classifier(m.backbone(b.views[0])), b.labels)
    assert torch.allclose(loss, ref, atol=1e-6)
    b.labels[2] = -1
    with pytest.raises(DataError, match="label -1"):
        m(b)


def test_symmetric_moco_averages_both_query_key_pairings_and_enqueues_one_key_per_image():
    c = cfg("method.name=moco_v2", "method.queue_size=10", "method.key_momentum=0.0", "method.temperature=0.2",
            "method.symmetric=true")
    m = build_method(c, 1).eval()
    queue0, b = m.queue.clone(), batch(2)
    loss, _ = m(b)                 # momentum 0: the key encoder is now a copy of the query encoder
    enc = lambda net, proj, x: F.normalize(proj(net(x)), dim=1)  # noqa: E731
    with torch.no_grad():
        k1, k2 = (enc(m.key_backbone, m.key_projector, v) for v in b.views[:2])
        q1, q2 = (enc(m.backbone, m.projector, v) for v in b.views[:2])
    nce = lambda q, k: F.cross_entropy(torch.cat([(q * k).sum(1, keepdim=True), q @ queue0.t()], 1) / 0.2,  # noqa: E731
                                       torch.zeros(len(q), dtype=torch.long))
    assert torch.allclose(loss, 0.5 * (nce(q1, k2) + nce(q2, k1)), atol=1e-5)
    assert not torch.allclose(loss, nce(q1, k2), atol=1e-3)
    assert int(m.queue_ptr) == 6 and torch.allclose(m.queue[:6], k2, atol=1e-6)
    with pytest.raises(ConfigError, match="method.symmetric"):
        cfg("method.name=simclr", "method.symmetric=true")


def test_clsa_loss_by_the_equations_and_no_gradient_through_the_weak_target():
    c = cfg("method.name=clsa", "method.queue_size=10", "method.temperature=0.2", "method.strong_sizes=[10, 8]",
            "method.ddm_weight=0.7")
    m = build_method(c, 1).eval()
    assert m.n_views == 4
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(6, 1, s, s, generator=g) for s in (12, 12, 10, 8)]
    b = MethodBatch(views, torch.arange(6), torch.zeros(6, dtype=torch.long))
    queue0 = m.queue.clone()
    loss, logs = m(b)
    loss.backward()
    got = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    m2 = build_method(c, 1).eval()
    m2.load_state_dict({**m.state_dict(), "queue": queue0, "queue_ptr": torch.zeros((), dtype=torch.long)})
    enc = lambda x: F.normalize(m2.projector(m2.backbone(x)), dim=1)  # noqa: E731
    with torch.no_grad():
        k = F.normalize(m2.key_projector(m2.key_backbone(views[1])), dim=1)
    q = enc(views[0])
    cand = torch.cat([k.unsqueeze(1), queue0.expand(6, -1, -1)], 1)           # [B, 1 + K, D]
    logit = lambda z: torch.einsum("bd,bcd->bc", z, cand) / 0.2  # noqa: E731
    l_c = -F.log_softmax(logit(q), 1)[:, 0].mean()
    target = F.softmax(logit(q), 1).detach()                                   # the weak branch is a target
    l_d = sum(-(target * F.log_softmax(logit(enc(x)), 1)).sum(1).mean() for x in views[2:])
    ref = l_c + 0.7 * l_d
    assert torch.allclose(loss, ref, atol=1e-5)
    assert torch.allclose(logs["l_ddm"], l_d.detach(), atol=1e-5)
    ref.backward()
    for n, p in m2.named_parameters():
        if n in got:
            assert torch.allclose(got[n], p.grad, atol=1e-5), n
    # letting L_D's gradient reach the weak query would change the gradient
    m2.zero_grad()
    q = enc(views[0])
    leak = l_c.detach() + sum(-(F.softmax(logit(q), 1) * F.log_softmax(logit(enc(x)), 1)).sum(1).mean()
                              for x in views[2:])
    leak.backward()
    assert not torch.allclose(got["projector.0.weight"], m2.projector[0].weight.grad, atol=1e-5)


def test_clsa_config_errors():
    with pytest.raises(ConfigError, match="method.strong_sizes"):
        cfg("method.name=clsa", "method.strong_sizes=[]")
    with pytest.raises(ConfigError, match="method.shuffle_bn"):
        cfg("method.name=simclr", "method.shuffle_bn=true")
    with pytest.raises(ConfigError, match="method.shuffle_bn"):
        cfg("method.name=moco_v2", "method.shuffle_bn=true", "model.sync_bn=true")


def test_cutmix_pastes_boxes_and_mixes_labels_by_area():
    from raycl.methods.imclr import cutmix

    torch.manual_seed(0)
    x = torch.arange(64, dtype=torch.float).view(64, 1, 1, 1).expand(64, 1, 8, 8).contiguous()
    target = F.one_hot(torch.arange(64) % 4, 4).float()
    mixed, soft = cutmix(x, target, p=1.0)
    assert torch.allclose(soft.sum(1), torch.ones(64))
    for i in range(64):
        own = (mixed[i] == i).float().mean()
        other = mixed[i][mixed[i] != i]
        partner = int(other[0]) if len(other) else i
        assert torch.allclose(soft[i], own * target[i] + (1 - own) * target[partner])
    assert (mixed != x).any()
    untouched, soft0 = cutmix(x, target, p=0.0)
    assert torch.equal(untouched, x) and torch.equal(soft0, target)


def test_imclr_with_cutmix_composes_per_image_targets():
    m = build_method(cfg("method.name=imclr", "method.num_classes=4", "method.cutmix_p=1.0"), 1).eval()
    loss, _ = m(batch(1))
    assert torch.isfinite(loss)
    from raycl.methods.imclr import cutmix

    torch.manual_seed(3)
    perms = m.partners(6, "cpu")
    x, t = cutmix(torch.randn(6, 1, 4, 4), F.one_hot(torch.tensor([0, 1, 0, 2, 1, 0]), 4).float(), 1.0)
    xk, tk = m.compose(x, t, perms)
    assert xk.shape == (6, 1, 4, 8) and torch.allclose(tk.sum(1), torch.ones(6))
    assert torch.allclose(tk, (t + t[perms[1]]) / 2)


def test_imclr_pi_model_uses_labels_only_of_the_labelled_subset():
    from raycl.methods.imclr import is_labelled, soft_cross_entropy

    c = cfg("method.name=imclr", "method.num_classes=4", "method.concat_k=1", "method.pi_weight=20",
            "method.labeled_fraction=0.5")
    m = build_method(c, 1).eval()
    assert m.n_views == 2
    b = batch(2)
    b.labels[0] = -1                              # an unlabelled sample is allowed
    loss, logs = m(b)
    with torch.no_grad():
        l1, l2 = m.classifier(m.backbone(b.views[0])), m.classifier(m.backbone(b.views[1]))
    keep = is_labelled(b.index, 0.5) & (b.labels >= 0)
    assert 0 < keep.sum() < 6
    ce = soft_cross_entropy(l1[keep], F.one_hot(b.labels[keep], 4).float())
    cons = ((F.softmax(l1, 1) - F.softmax(l2, 1)) ** 2).mean()
    assert torch.allclose(loss, ce + 20 * cons, atol=1e-5)
    frac = is_labelled(torch.arange(10000), 0.3).float().mean().item()
    assert abs(frac - 0.3) < 0.02
    with pytest.raises(ConfigError, match="method.labeled_fraction"):
        cfg("method.name=imclr", "method.labeled_fraction=0.5")


def test_autoaugment_views_are_per_image_and_reproducible():
    from raycl.data.views import AutoAugmentViews, SimCLRViews

    views = AutoAugmentViews(SimCLRViews(16, n_views=1, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0,
                                         jitter_p=0.0, gray_p=0.0, blur_p=0.0))
    imgs = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8).expand(32, -1, -1, -1).contiguous()
    a = views(imgs, torch.Generator().manual_seed(0))[0]
    b = views(imgs, torch.Generator().manual_seed(0))[0]
    assert torch.equal(a, b)
    distinct = {tuple(v.flatten()[:64].round(decimals=3).tolist()) for v in a}
    assert len(distinct) > 4      # copies of one image got different sub-policies


def test_interclr_bank_starts_from_the_initial_networks_features():
    """InterCLR 3.2 (bank_init: features): before the first step the bank holds every sample's
    normalised embedding under the initial network (no augmentation; BatchNorm with the statistics of
    each chunk, as in training, running statistics untouched), and k-means is the single-process
    Lloyd over those rows."""
    import copy

    from raycl.bank import lloyd
    from raycl.data import eval_rounds
    from raycl.data.demo import demo_sources
    from raycl.data.views import eval_view

    c = cfg("method.name=interclr", "method.bank_size=300", "method.num_clusters=10", "method.num_negatives=64",
            "model.width=8", "model.proj_hidden_dim=32", "model.proj_out_dim=16")
    torch.manual_seed(0)
    m = build_method(c, 1)
    src = demo_sources(0.2, num_samples=256)[0]
    random_rows = m.bank.rows.clone()
    running = {k: v.clone() for k, v in m.state_dict().items() if "running" in k or "num_batches" in k}
    m.init_from_features(eval_rounds(src, 100, 0, 1))
    assert m.training and bool(m.kmeans.initialized)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in running.items())   # BN statistics untouched
    data = src.read_all()
    x = eval_view(torch.from_numpy(data.images))
    expect = []
    for s in range(0, len(x), 100):     # BN over each chunk of 100, as a training forward would
        ref = copy.deepcopy(m).train()
        with torch.no_grad():
            expect.append(F.normalize(ref.projector(ref.backbone(x[s:s + 100])), dim=1))
    assert torch.allclose(m.bank.rows[torch.from_numpy(data.index)], torch.cat(expect), atol=1e-5)
    assert torch.equal(m.bank.rows[256:], random_rows[256:])     # rows of no sample stay as they were
    _, labels = lloyd(m.bank.rows, 10)
    assert torch.equal(m.kmeans.labels, labels)
