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
