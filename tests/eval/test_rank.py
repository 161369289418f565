"""raycl.eval.effective_rank against its formula on features whose singular values are set by hand."""
import math

import pytest
import torch

from raycl.eval import effective_rank


def features_with_singular_values(values, rows=50, seed=0):
    """Mean-centred rows (u orthogonal to the ones vector) whose singular values are ``values``."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(rows, len(values), generator=g, dtype=torch.float64)
    u, _ = torch.linalg.qr(a - a.mean(0))
    v, _ = torch.linalg.qr(torch.randn(len(values), len(values), generator=g, dtype=torch.float64))
    return (u @ torch.diag(torch.tensor(values, dtype=torch.float64)) @ v.T).float()


def test_effective_rank_is_exp_of_the_entropy_of_the_normalised_singular_values():
    p = [3 / 6, 2 / 6, 1 / 6, 0.0]
    by_hand = math.exp(-sum(x * math.log(x) for x in p if x > 0))
    assert math.isclose(effective_rank(features_with_singular_values([3.0, 2.0, 1.0, 0.0])), by_hand, rel_tol=1e-4)
    assert math.isclose(effective_rank(features_with_singular_values([5.0] * 8)), 8.0, rel_tol=1e-4)
    line = torch.randn(30, 1) * torch.randn(1, 16)
    assert math.isclose(effective_rank(line), 1.0, rel_tol=1e-4)                 # collapsed: one direction
    offset = features_with_singular_values([3.0, 2.0, 1.0, 0.0]) + 100.0           # all positive, as after a ReLU
    assert effective_rank(offset) == pytest.approx(effective_rank(offset - offset.mean(0)), rel=1e-4)
    scaled = features_with_singular_values([4.0, 1.0, 1.0]) * 1000
    assert math.isclose(effective_rank(scaled), effective_rank(scaled / 1000), rel_tol=1e-4)   # scale-free


@pytest.mark.parametrize("shape", [(300, 7), (7, 300), (5000, 3), (3, 5000)])   # tall, wide, over CHUNK
def test_the_chunked_gram_gives_the_singular_values_of_the_centred_features(shape):
    features = torch.rand(*shape) * torch.linspace(0.1, 3.0, shape[1]) + 5.0
    by_svd = torch.linalg.svdvals(features.double() - features.double().mean(0))
    p = by_svd / by_svd.sum()
    p = p[p > 1e-12]
    assert math.isclose(effective_rank(features), math.exp(-(p * p.log()).sum()), rel_tol=1e-6)
