"""``raycl knn``: weighted kNN over every training row, on Ray Train workers that each hold only
their share of the training features (1.28M x 2048 floats is 10 GB: no worker or driver holds it all).

Each worker loads the checkpoint's encoder, extracts the features of its contiguous share of the
training rows and of the held-out rows; the held-out features are gathered whole (the queries: 50,000
x 2048 floats is 400 MB for ImageNet's validation set), then, a chunk of queries at a time, every
worker finds its k nearest, the k-lists are gathered and merged and the merged k vote
(``raycl.eval.knn``). Rank 0 reports top-1 and top-5."""

from __future__ import annotations

import os
import tempfile

import ray
import ray.train
import ray.train.torch
import torch
import torch.nn.functional as F

from raycl import collectives as dist
from raycl.data import eval_sources
from raycl.errors import ConfigError
from raycl.eval import extract
from raycl.eval.features import rows_per_forward
from raycl.eval.knn import merge_topk, shard_topk, vote
from raycl.train import console, launch
from raycl.train.checkpoint import load_checkpoint_model
from raycl.train.launch import Launch, read_figures, report_figures
from raycl.train.trainer import init_ray
from raycl.train.worker import announcing_errors

QUERY_CHUNK = 1024


def labeled_features(backbone, source, device, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This worker's share of ``source``: normalised features and labels of its labeled rows."""
    feats, labels = extract(backbone, source, (dist.rank(), dist.world_size()), batch, device)
    keep = labels >= 0
    return F.normalize(feats[keep].to(device), dim=1), labels[keep].to(device)


@announcing_errors
def knn_loop(config: dict) -> None:
    cfg, method = load_checkpoint_model(config["checkpoint"])
    device = ray.train.torch.get_device()
    backbone = method.encoder().to(device).eval()
    train_src, eval_src = eval_sources(cfg)
    batch = rows_per_forward(cfg.data.channels, cfg.data.image_size)
    feats, labels = labeled_features(backbone, train_src, device, batch)
    queries, query_labels = (dist.all_gather_nograd(t) for t in labeled_features(backbone, eval_src, device, batch))
    rows = int(dist.all_reduce_sum(torch.tensor([len(labels)], device=device)).item())
    top_label = dist.all_gather_nograd(torch.tensor([int(labels.max()) if len(labels) else -1], device=device))
    if rows == 0 or len(queries) == 0:
        raise ConfigError("raycl knn: the training or held-out rows of this checkpoint's data hold no label")
    k, classes, world = min(config["k"], rows), int(top_label.max()) + 1, dist.world_size()
    correct = torch.zeros(2, device=device)
    for start in range(0, len(queries), QUERY_CHUNK):
        chunk = queries[start : start + QUERY_CHUNK]
        sims, near = shard_topk(chunk, feats, labels, k)
        sims, near = (dist.all_gather_nograd(t).view(world, len(chunk), k) for t in (sims, near))
        sims, near = (t.permute(1, 0, 2).reshape(len(chunk), world * k) for t in (sims, near))
        sims, near = merge_topk(sims, near, k)
        ranked = vote(sims, near, classes, config["temperature"])
        truth = query_labels[start : start + QUERY_CHUNK].view(-1, 1)
        correct += torch.stack([(ranked[:, :1] == truth).any(1).sum(), (ranked == truth).any(1).sum()]).float()
    metrics = {
        "knn_all_top1": float(correct[0]) / len(queries), "knn_all_top5": float(correct[1]) / len(queries),
        "knn_all_train_rows": rows, "knn_all_queries": len(queries), "knn_all_k": k,
        "knn_all_temperature": config["temperature"], "knn_all_classes": classes, "knn_all_workers": world,
    }  # fmt: skip
    report_figures(metrics)


def knn(checkpoint: str, workers: int = 2, k: int | None = None, temperature: float | None = None,
        cpus_per_worker: float = 1.0, use_gpu: bool = False, address: str | None = None) -> dict:  # fmt: skip
    """kNN top-1/top-5 of a checkpoint's encoder over every training row (k and T default to the
    run's ``eval.knn_k``, ``eval.knn_temperature``)."""
    cfg, _ = load_checkpoint_model(checkpoint)  # refuses a bad checkpoint before Ray starts
    if workers < 1:
        raise ConfigError(f"--workers: expected an integer >= 1, got {workers}")
    config = {"checkpoint": os.path.abspath(os.path.expanduser(checkpoint)), "k": k or cfg.eval.knn_k,
              "temperature": temperature or cfg.eval.knn_temperature}  # fmt: skip
    owned = init_ray(address, num_cpus=max(os.cpu_count() or 1, int(workers * cpus_per_worker)))
    try:
        with tempfile.TemporaryDirectory(prefix="raycl-knn-") as folder, console.attached():
            run = Launch(knn_loop, config, name="knn", storage={"storage_path": folder}, workers=workers,
                         use_gpu=use_gpu, cpus_per_worker=cpus_per_worker)  # fmt: skip
            return read_figures(launch.fit(run))
    finally:
        if owned:
            ray.shutdown()
