"""The all-gather brings every worker's embeddings, and the gradient flows back to their owners:
a 2-worker Ray Train run must give exactly the single-process gradient of the global-batch loss."""
import torch

from raycl import dist
from raycl.losses import nt_xent


def make_problem():
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(8, 6, generator=g, dtype=torch.float64), torch.randn(8, 6, generator=g, dtype=torch.float64)
    w = torch.randn(6, 4, generator=g, dtype=torch.float64)
    return x1, x2, w


def local_grad(rank, world):
    """What one worker computes: its rows through the encoder, gathered negatives, own anchors."""
    x1, x2, w = make_problem()
    w = w.clone().requires_grad_(True)
    b = 8 // world
    sl = slice(rank * b, (rank + 1) * b)
    z1, z2 = x1[sl] @ w, x2[sl] @ w
    loss = nt_xent(dist.all_gather(z1), dist.all_gather(z2), 0.5, anchor_rows=slice(rank * b, (rank + 1) * b))
    loss.backward()
    grad = w.grad.clone()
    dist.all_reduce_sum(grad)          # what data-parallel averaging does
    return loss.item(), (grad / world), dist.all_gather_nograd(z1.detach())


def bn_problem():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, 4, 4, generator=g, dtype=torch.float64), torch.randn(8, 3, 4, 4, generator=g,
                                                                                 dtype=torch.float64)


def bn_run(rank, world):
    """GlobalBatchNorm on this worker's rows; returns output, input gradient, summed weight gradient."""
    from raycl.dist.batchnorm import convert_global_batchnorm

    x, w = bn_problem()
    b = 8 // world
    x = x[rank * b:(rank + 1) * b].clone().requires_grad_(True)
    bn = convert_global_batchnorm(torch.nn.BatchNorm2d(3).double())
    y = bn(x)
    (y * w[rank * b:(rank + 1) * b]).sum().backward()
    wgrad = bn.weight.grad.clone()
    dist.all_reduce_sum(wgrad)
    return {"y": y.detach(), "xgrad": x.grad, "wgrad": wgrad, "running_var": bn.running_var.clone()}


def worker(_config):
    import ray.train

    ctx = ray.train.get_context()
    loss, grad, gathered = local_grad(ctx.get_world_rank(), ctx.get_world_size())
    bn = bn_run(ctx.get_world_rank(), ctx.get_world_size())
    with open(f"{_config['out']}/rank{ctx.get_world_rank()}.pt", "wb") as fh:
        torch.save({"loss": loss, "grad": grad, "gathered": gathered, "bn": bn}, fh)


def test_gathered_loss_gradient_equals_single_process(ray_cluster, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    TorchTrainer(worker, train_loop_config={"out": str(tmp_path)},
                 scaling_config=ScalingConfig(num_workers=2),
                 run_config=RunConfig(storage_path=str(tmp_path / "st"), name="gather")).fit()
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))

    x1, x2, w = make_problem()
    w.requires_grad_(True)
    ref_loss = nt_xent(x1 @ w, x2 @ w, 0.5)
    ref_loss.backward()
    assert torch.allclose(r0["grad"], w.grad) and torch.allclose(r1["grad"], w.grad)
    assert abs((r0["loss"] + r1["loss"]) / 2 - ref_loss.item()) < 1e-10
    # rank 0 really received rank 1's embeddings
    assert torch.allclose(r0["gathered"], (x1 @ w).detach())

    # Without the gradient all-reduce in backward (a bare all_gather), the gradient would differ:
    w2 = w.detach().clone().requires_grad_(True)
    z1, z2 = x1 @ w2, x2 @ w2
    detached = [torch.cat([z1[:4], z1[4:].detach()]), torch.cat([z2[:4], z2[4:].detach()])]
    nt_xent(*detached, 0.5, anchor_rows=slice(0, 4)).backward()
    assert not torch.allclose(w2.grad, w.grad)

    # GlobalBatchNorm over 2 workers = BatchNorm over the whole batch, forward and backward
    x, wt = bn_problem()
    x.requires_grad_(True)
    bn = torch.nn.BatchNorm2d(3).double()
    y = bn(x)
    (y * wt).sum().backward()
    assert torch.allclose(torch.cat([r0["bn"]["y"], r1["bn"]["y"]]), y)
    assert torch.allclose(torch.cat([r0["bn"]["xgrad"], r1["bn"]["xgrad"]]), x.grad)
    assert torch.allclose(r0["bn"]["wgrad"], bn.weight.grad)
    assert torch.allclose(r0["bn"]["running_var"], bn.running_var)
    # a per-worker BN would normalise with local statistics and differ
    local = torch.nn.BatchNorm2d(3).double()(x[:4].detach())
    assert not torch.allclose(local, y[:4])
