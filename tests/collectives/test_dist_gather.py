"""The all-gather brings every worker's embeddings, and the gradient flows back to their owners:
a 2-worker Ray Train run must give exactly the single-process gradient of the global-batch loss."""
import torch

from raycl import collectives as dist
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
    from raycl.collectives.batchnorm import convert_global_batchnorm

    x, w = bn_problem()
    b = 8 // world
    x = x[rank * b:(rank + 1) * b].clone().requires_grad_(True)
    bn = convert_global_batchnorm(torch.nn.BatchNorm2d(3).double())
    y = bn(x)
    (y * w[rank * b:(rank + 1) * b]).sum().backward()
    wgrad = bn.weight.grad.clone()
    dist.all_reduce_sum(wgrad)
    return {"y": y.detach(), "xgrad": x.grad, "wgrad": wgrad, "running_var": bn.running_var.clone()}


def moco(**extra):
    from raycl.config import apply_overrides, from_dict
    from raycl.methods import build_method

    over = ["method.name=moco_v2", "model.width=4", "model.proj_hidden_dim=8", "model.proj_out_dim=4",
            "method.queue_size=6", "method.shuffle_bn=true"]
    torch.manual_seed(0)
    return build_method(from_dict(apply_overrides({}, over)), 1).double()


def moco_problem():
    return torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def moco_run(rank, world):
    """Shuffle-BN keys of this worker's rows, and the queue after two enqueues of distinct keys."""
    m = moco()
    b = 8 // world
    torch.manual_seed(5)              # the permutation rank 0 draws (and broadcasts)
    keys = m.keys(moco_problem()[rank * b:(rank + 1) * b])
    for step in range(2):
        m.enqueue(dist.all_gather_nograd(torch.full((2, 4), 10.0 * step + rank, dtype=torch.float64)))
    return {"keys": keys, "queue": m.queue.clone(), "ptr": int(m.queue_ptr)}


def worker(_config):
    import ray.train

    ctx = ray.train.get_context()
    loss, grad, gathered = local_grad(ctx.get_world_rank(), ctx.get_world_size())
    bn = bn_run(ctx.get_world_rank(), ctx.get_world_size())
    mo = moco_run(ctx.get_world_rank(), ctx.get_world_size())
    with open(f"{_config['out']}/rank{ctx.get_world_rank()}.pt", "wb") as fh:
        torch.save({"loss": loss, "grad": grad, "gathered": gathered, "bn": bn, "moco": mo}, fh)


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

    # MoCo shuffle-BN: each worker's key-BN saw the slice of a permutation of the global batch
    m, x = moco(), moco_problem()
    torch.manual_seed(5)
    perm = torch.randperm(8)
    with torch.no_grad():
        k_perm = torch.cat([m.key_net(x[perm[:4]]), m.key_net(x[perm[4:]])])
        local = torch.cat([m.key_net(x[:4]), m.key_net(x[4:])])
    ref = torch.empty_like(k_perm)
    ref[perm] = k_perm
    got = torch.cat([r0["moco"]["keys"], r1["moco"]["keys"]])
    assert torch.allclose(got, ref)
    assert not torch.allclose(got, local)      # per-worker BN would give other keys
    # the queue (size 6): both workers hold the same one, rank 0's keys before rank 1's; the
    # second enqueue fills slots 4, 5 then wraps over the oldest, slots 0, 1
    for r in (r0, r1):
        assert r["moco"]["queue"][:, 0].tolist() == [11.0, 11.0, 1.0, 1.0, 10.0, 10.0]
        assert r["moco"]["ptr"] == 2
