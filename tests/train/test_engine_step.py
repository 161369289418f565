"""raycl's DeepSpeed engine takes the optimizer's step as configured: one engine step equals the
hand-written SGD update of the same gradients (DeepSpeed 0.19 clips the gradient norm at 1.0 by
default; raycl turns that off unless optim.grad_clip asks for it)."""
import os
import socket
import subprocess
import sys

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


def engine_and_batch(cfg):
    """A 1-worker engine for ``cfg`` and the first demo batch's views, drawn as a worker draws them."""
    from raycl.data import EpochLoader
    from raycl.data.demo import demo_sources
    from raycl.methods import MethodBatch
    from raycl.train.engine import build_engine, make_views
    from raycl.train.worker import aug_generator

    engine = build_engine(cfg, 1, 4)
    bt = next(iter(EpochLoader(demo_sources(0.2, num_samples=256)[0], 64, seed=0).batches(0)))
    views = make_views(cfg, engine.module)(torch.from_numpy(bt.images), aug_generator(0, 0, 0, "cpu"))
    return engine, MethodBatch(views, torch.from_numpy(bt.index), torch.from_numpy(bt.labels))


def engine_step(engine, batch):
    """One engine step on ``batch``: (loss, the trained parameters' gradients, the lr it stepped with)."""
    loss, _ = engine(batch)
    engine.backward(loss)
    grads = {n: p.grad.detach().clone() for n, p in engine.module.named_parameters() if p.requires_grad}
    lr = engine.get_lr()[0]
    engine.step()
    return loss, grads, lr


def assert_sgd_step(model, before, grads, lr, weight_decay, scale=1.0):
    """Every trained parameter moved by lr x (its gradient x ``scale`` + weight decay on the weights)."""
    for n, p in model.named_parameters():
        if p.requires_grad:
            g = grads[n] * scale + (weight_decay * before[n] if p.ndim > 1 else 0)
            assert torch.allclose(p.detach(), before[n] - lr * g, atol=1e-7, rtol=1e-5), n


# SimCLIC too (it ends below its random-init floor on Fashion-MNIST, so its step is checked as well): its
# step is the plain SGD step on its own loss, stop-gradient branch and all.
# InterCLR: its step on its own loss, and each sampled row of the bank moved to normalize((1 - w) v_old + w v).
INTERCLR = ["method.bank_size=256", "method.num_clusters=8", "method.num_negatives=32", "method.bank_init=random"]


@pytest.mark.parametrize("clip, method", [(None, "simclr"), (0.5, "simclr"), (None, "simclic"), (None, "interclr")])
def test_engine_step_is_the_configured_sgd_step(gloo_world_of_one, tiny_cfg, clip, method):
    cfg = tiny_cfg("distributed.workers=1", "distributed.zero_stage=0", "optim.weight_decay=1e-3",
                   f"method.name={method}", *(["method.perturbation=noise"] if method == "simclic" else []),
                   *(INTERCLR if method == "interclr" else []),
                   *([f"optim.grad_clip={clip}"] if clip else []))
    engine, batch = engine_and_batch(cfg)
    before = {n: p.detach().clone() for n, p in engine.module.named_parameters()}
    bank_before = engine.module.bank.rows.clone() if method == "interclr" else None
    loss, grads, lr = engine_step(engine, batch)
    assert grads.keys() == before.keys()     # every parameter is trained
    norm = float(torch.sqrt(sum((g ** 2).sum() for g in grads.values())))
    scale = min(1.0, clip / norm) if clip else 1.0
    assert norm > 0.5 or not clip      # the clipped case really clips
    assert_sgd_step(engine.module, before, grads, lr, cfg.optim.weight_decay, scale)
    assert np.isfinite(loss.item())
    if bank_before is not None:   # v of the pre-step network (train-mode BN, as in the forward)
        model, w = engine.module, cfg.method.bank_momentum
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(before[name])
            v = torch.nn.functional.normalize(model.projector(model.backbone(batch.views[0])), dim=1)
        expected = torch.nn.functional.normalize((1 - w) * bank_before[batch.index] + w * v, dim=1)
        assert torch.allclose(model.bank.rows[batch.index], expected, atol=1e-5)
        untouched = torch.ones(len(bank_before), dtype=torch.bool)
        untouched[batch.index] = False
        assert torch.equal(model.bank.rows[untouched], bank_before[untouched])


# MoCo v2 and CLSA (the queue methods sit nearest the raw-pixel floor on Fashion-MNIST): one
# engine step is the SGD step of the query encoder, the key encoder's EMA of the query encoder as it was
# before the step, and the new keys in the queue, each written out here from the paper's pseudocode.
@pytest.mark.parametrize("method", ["moco_v2", "clsa"])
def test_momentum_method_step_by_hand(gloo_world_of_one, tiny_cfg, method):
    import copy

    import torch.nn.functional as F

    m, tau = 0.9, 0.2
    cfg = tiny_cfg("distributed.workers=1", "distributed.zero_stage=0", "optim.weight_decay=1e-3",
                   f"method.name={method}", "method.queue_size=128", f"method.key_momentum={m}",
                   f"method.temperature={tau}", *(["method.strong_sizes=[16]"] if method == "clsa" else []))
    engine, batch = engine_and_batch(cfg)
    model = engine.module
    before = copy.deepcopy(model)
    loss, grads, lr = engine_step(engine, batch)
    # the query encoder: SGD with weight decay on the weights
    params_before = {n: p.detach() for n, p in before.named_parameters()}
    assert_sgd_step(model, params_before, grads, lr, cfg.optim.weight_decay)
    pairs = [(before.backbone, before.key_backbone), (before.projector, before.key_projector)]
    with torch.no_grad():
        for query, key in pairs:   # f_k = m f_k + (1 - m) f_q, with f_q before the step
            for pq, pk in zip(query.parameters(), key.parameters()):
                pk.copy_(m * pk + (1 - m) * pq)
        x_q, x_k = batch.views[:2]
        k = F.normalize(before.key_projector(before.key_backbone(x_k)), dim=1)
        q = F.normalize(before.projector(before.backbone(x_q)), dim=1)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ before.queue.T], dim=1) / tau   # eq. 1
        contrastive = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))
    for (_, key), (_, key_after) in zip(pairs, [(model.backbone, model.key_backbone),
                                                (model.projector, model.key_projector)]):
        for pk, pk_after in zip(key.parameters(), key_after.parameters()):
            assert torch.allclose(pk_after, pk, atol=1e-7, rtol=1e-5)
    assert torch.allclose(model.queue[:64], k, atol=1e-5) and int(model.queue_ptr) == 64     # enqueued
    assert torch.equal(model.queue[64:], before.queue[64:])
    if method == "moco_v2":
        assert torch.allclose(loss.detach(), contrastive, atol=1e-6)
    else:   # CLSA adds beta L_D >= 0 (a cross-entropy between distributions)
        assert loss.item() > contrastive.item()


def test_the_engine_skips_deepspeeds_shared_memory_all_reduce(gloo_world_of_one, tiny_cfg):
    """DeepSpeed's CPU backend would compile its shared-memory all-reduce (24 s of C++ on a machine's
    first run; it serves inference only): raycl's engine leaves it unbuilt and still steps."""
    from deepspeed.comm import comm

    engine, batch = engine_and_batch(tiny_cfg("distributed.workers=1", "distributed.zero_stage=0"))
    assert comm.cdb is not None and comm.cdb.shm_comm_op is None
    loss, _, _ = engine_step(engine, batch)
    assert torch.isfinite(loss)


STEP_IN_A_FRESH_PROCESS = """
import os, socket, sys
import torch, torch.distributed as tdist
sys.path.insert(0, {tests!r})
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
tdist.init_process_group("gloo")
from test_engine_step import engine_and_batch
from tiny import tiny_config
engine, batch = engine_and_batch(tiny_config({runs!r}, "distributed.workers=1", "distributed.zero_stage=2"))
loss, _ = engine(batch)
engine.backward(loss)  # ZeRO-2 reduces the gradients here (where DeepSpeed imports Muon again)
engine.step()
print("loaded", "mlflow" in sys.modules, "torch._inductor.compile_fx" in sys.modules, bool(torch.isfinite(loss)))
print("env", "TORCHDYNAMO_DISABLE" in os.environ)
import mlflow
double = lambda x: x * 2
print("after", mlflow.__name__, torch.compile(double) is not double)  # TorchDynamo off returns it as is
"""


@pytest.mark.slow  # a CLI in a subprocess
def test_deepspeed_starts_without_mlflow_or_inductor_and_both_work_afterwards(tmp_path):
    """DeepSpeed's autotuner imports mlflow when installed (1.2 s) and ZeRO's optimizer check imports
    Muon, whose torch.compile decorators load inductor (1.9 s): a ZeRO-2 engine built and stepped in a
    fresh process loads neither, the environment is left as it was, and mlflow and torch.compile work
    afterwards."""
    pytest.importorskip("mlflow")
    code = STEP_IN_A_FRESH_PROCESS.format(tests=os.path.dirname(__file__), runs=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != "TORCHDYNAMO_DISABLE"})
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if line.split(" ")[0] in ("loaded", "env", "after")]
    assert lines == ["loaded False False True", "env False", "after mlflow True"], out.stdout
