"""The nearest training images of a few held-out images, under a checkpoint's frozen encoder."""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F

from raycl.data import eval_sources, subset
from raycl.eval import extract


def neighbours(cfg, method, queries: int = 5, k: int = 5, seed: int = 0) -> dict:
    """Nearest training images (cosine, frozen encoder) of ``queries`` random held-out images:
    {"query_images", "neighbour_images" [q, k, ...], "query_labels", "neighbour_labels"}."""

    e = cfg.eval
    train_src, eval_src = eval_sources(cfg)
    train_src, eval_src = (
        subset(train_src, e.max_train_samples, cfg.run.seed),
        subset(eval_src, e.max_eval_samples, cfg.run.seed),
    )
    tr, tr_y = extract(method.encoder(), train_src)
    te, te_y = extract(method.encoder(), eval_src)
    pick = np.random.default_rng(seed).choice(len(te), queries, replace=False)
    sim = F.normalize(te[pick], dim=1) @ F.normalize(tr, dim=1).t()
    nn_idx = sim.topk(k, dim=1).indices.numpy()

    def images(src, feature_rows):  # extract() leaves corrupt rows out: map feature rows to positions
        valid = (
            np.concatenate([src.read_rows(b).valid for b in range(len(src.block_sizes))])
            if cfg.data.on_corrupt == "skip"
            else np.ones(len(src), bool)
        )
        got = src.read_positions(np.flatnonzero(valid)[np.asarray(feature_rows).reshape(-1)]).images
        return got.reshape(np.shape(feature_rows) + got.shape[1:])

    return {
        "query_images": images(eval_src, pick),
        "neighbour_images": images(train_src, nn_idx),
        "query_labels": te_y[pick].numpy(),
        "neighbour_labels": tr_y.numpy()[nn_idx],
    }
