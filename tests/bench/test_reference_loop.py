"""A raycl run (Ray Train, a DeepSpeed engine, 1 worker) ends with the weights a plain single-process
PyTorch loop of the same method reaches: the same data and views, SGD with momentum, weight decay on the
weights only, linear warm-up then cosine, all written here by hand: the reference for every method below
a floor on the quality table; the queue and bank methods are the candidates."""
import math

import numpy as np
import pytest
import torch

from raycl.data import EpochLoader, build_sources
from raycl.data.draws import SampleStream
from raycl.data.views import views_for
from raycl.methods import MethodBatch, build_method
from raycl.train.checkpoint import load_model_file
from raycl.train.trainer import fit
from raycl.train.worker import aug_generator

CASES = {
    "moco_v2": ["method.queue_size=128", "method.key_momentum=0.9", "method.temperature=0.2"],
    "interclr": ["method.bank_size=256", "method.num_clusters=8", "method.num_negatives=32", "method.bank_init=random"],
}


def plain_loop(cfg, steps_per_epoch):
    """The method trained as a one-file PyTorch script would train it, on the worker's thread count:
    at this size a trajectory depends on the order of float sums (one step on 1 thread and on 2 differs
    by ~1e-6 in the loss, four steps later by ~1e-3: the step is unstable along some directions)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.distributed.torch_threads)
    try:
        return train_by_hand(cfg, steps_per_epoch)
    finally:
        torch.set_num_threads(threads)


def train_by_hand(cfg, steps_per_epoch):
    torch.manual_seed(cfg.run.seed)
    model = build_method(cfg, cfg.data.channels).train()
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD([{"params": [p for p in trained if p.ndim > 1], "weight_decay": cfg.optim.weight_decay},
                                 {"params": [p for p in trained if p.ndim <= 1], "weight_decay": 0.0}],
                                lr=0.0, momentum=cfg.optim.momentum)
    peak, warmup = cfg.optim.base_lr * cfg.data.batch_size / 256, cfg.optim.warmup_steps
    total = cfg.run.epochs * steps_per_epoch
    views, source = views_for(cfg, model), build_sources(cfg)[0]
    step = 0
    for epoch in range(cfg.run.epochs):
        for i, batch in enumerate(EpochLoader(source, cfg.data.batch_size, seed=cfg.run.seed).batches(epoch)):
            x = torch.from_numpy(batch.images)
            stream = SampleStream(aug_generator(cfg.run.seed, epoch, i, "cpu"), len(x), 0)
            views_of_x = views(x, stream)
            loss, _ = model(MethodBatch(views_of_x, torch.from_numpy(batch.index), torch.from_numpy(batch.labels)))
            after_warmup = (step - warmup) / (total - warmup)
            scale = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * after_warmup))
            for group in optimizer.param_groups:
                group["lr"] = peak * scale
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
    return model.state_dict(), step


@pytest.mark.parametrize("method", list(CASES))
def test_a_raycl_run_ends_where_a_plain_pytorch_loop_does(ray_cluster, tiny_cfg, method):
    cfg = tiny_cfg("distributed.workers=1", "distributed.zero_stage=1", "run.epochs=2", "optim.warmup_steps=3",
                   "optim.weight_decay=1e-3", "data.num_samples=256", f"method.name={method}", *CASES[method],
                   f"run.name=reference-{method}")
    result = fit(cfg)
    ours = load_model_file(result.checkpoint.path)["state_dict"]
    reference, steps = plain_loop(cfg, result.metrics["global_step"] // cfg.run.epochs)
    assert steps == result.metrics["global_step"] == 8
    assert ours.keys() == reference.keys()
    moved = 0
    torch.manual_seed(cfg.run.seed)
    init = build_method(cfg, cfg.data.channels).state_dict()
    for name, value in reference.items():
        assert torch.allclose(ours[name].float(), value.float(), rtol=1e-4, atol=1e-5), name
        moved += not torch.equal(value, init[name])
    assert moved > len(reference) // 2          # the loop really trained: most tensors left their init
    assert np.isfinite(result.metrics["loss"])
