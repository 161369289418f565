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
