"""raycl's DeepSpeed engine takes the optimizer's step as configured: one engine step equals the
hand-written SGD update of the same gradients (DeepSpeed 0.19 clips the gradient norm at 1.0 by
default; raycl turns that off unless optim.grad_clip asks for it)."""
import os
import socket

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def gloo_world_of_one():
    import torch.distributed as tdist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    tdist.init_process_group("gloo")
    yield
    tdist.destroy_process_group()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


# SimCLIC too (issue 24's investigation of why it ends below its random-init floor): its step is the
# plain SGD step on its own loss, stop-gradient branch and all.
@pytest.mark.parametrize("clip, method", [(None, "simclr"), (0.5, "simclr"), (None, "simclic")])
def test_engine_step_is_the_configured_sgd_step(gloo_world_of_one, tiny_cfg, clip, method):
    from raycl.data import EpochLoader
    from raycl.data.demo import demo_sources
    from raycl.methods import MethodBatch
    from raycl.train.engine import build_engine, make_views
    from raycl.train.worker import aug_generator

    cfg = tiny_cfg("distributed.workers=1", "distributed.zero_stage=0", "optim.weight_decay=1e-3",
                   f"method.name={method}", *(["method.perturbation=noise"] if method == "simclic" else []),
                   *([f"optim.grad_clip={clip}"] if clip else []))
    src = demo_sources(0.2, num_samples=256)[0]
    engine = build_engine(cfg, 1, 4)
    views = make_views(cfg, engine.module)
    bt = next(iter(EpochLoader(src, 64, seed=0).batches(0)))
    before = {n: p.detach().clone() for n, p in engine.module.named_parameters()}
    loss, _ = engine(MethodBatch(views(torch.from_numpy(bt.images), aug_generator(0, 0, 0, "cpu")),
                                 torch.from_numpy(bt.index), torch.from_numpy(bt.labels)))
    engine.backward(loss)
    grads = {n: p.grad.detach().clone() for n, p in engine.module.named_parameters()}
    lr = engine.get_lr()[0]
    engine.step()
    norm = float(torch.sqrt(sum((g ** 2).sum() for g in grads.values())))
    scale = min(1.0, clip / norm) if clip else 1.0
    assert norm > 0.5 or not clip      # the clipped case really clips
    for n, p in engine.module.named_parameters():
        g = grads[n] * scale + (cfg.optim.weight_decay * before[n] if p.ndim > 1 else 0)
        assert torch.allclose(p.detach(), before[n] - lr * g, atol=1e-7, rtol=1e-5), n
    assert np.isfinite(loss.item())
