"""A Ray Train run of a checked config, as a dict: what ``raycl.api.train`` and the trained evaluation
protocols return. Ray is imported only once the data has passed its checks."""

from __future__ import annotations

import os

from raycl.data import check_data
from raycl.train.checkpoint import read_state


def train(cfg, address: str | None = None) -> dict:
    """The last epoch's metrics plus ``run_dir`` and ``checkpoint``."""
    check_data(cfg)
    from raycl.train.trainer import fit

    result = fit(cfg, address)
    out = dict(result.metrics or {})
    out["run_dir"] = result.path
    out["checkpoint"] = result.checkpoint.path if result.checkpoint else None
    return out


def history(checkpoint: str) -> list[dict]:
    """Every epoch's metrics (loss, lr, images/s, kNN top-1) up to a checkpoint, across resumes."""
    return read_state(os.path.expanduser(checkpoint)).get("history", [])


def best_epoch(checkpoint: str, metric: str) -> dict:
    """The epoch whose ``<metric>_top1`` was highest: ``best_<metric>_top1``, ``best_<metric>_top5``,
    ``<metric>_best_epoch`` (None each when no epoch reported it)."""
    epochs = [h for h in history(checkpoint) if f"{metric}_top1" in h]
    best = max(epochs, key=lambda h: h[f"{metric}_top1"], default={})
    return {f"best_{metric}_top1": best.get(f"{metric}_top1"), f"best_{metric}_top5": best.get(f"{metric}_top5"),
            f"{metric}_best_epoch": best.get("epoch")}  # fmt: skip
