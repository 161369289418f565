"""Data sources, the per-worker epoch loader and augmentations (plain PyTorch/NumPy, no Ray)."""

from __future__ import annotations

import numpy as np
import torch

from raycl.data.demo import demo_sources
from raycl.data.loader import Batch, EpochLoader
from raycl.data.parquet import ParquetSource
from raycl.data.source import ArraySource, Block, RowSubset, Source, rounds, subset
from raycl.data.views import eval_view
from raycl.errors import DataError
from raycl.fields import MAX_CLASSES
from raycl.log import PREFIX
from raycl.log import get as get_logger

log = get_logger(__name__)


def build_sources(cfg) -> tuple[Source, Source]:
    """(train, held-out) sources for a config. Without ``data.eval_path`` a Parquet run holds out
    ``data.eval_fraction`` of its rows for the monitor's queries (those rows are still trained on).
    ``data.rows`` keeps only the listed training rows (a label subset for fine-tuning);
    ``data.validation`` splits the training rows in two and leaves the held-out ones unused."""
    train, held = _all_sources(cfg)
    if cfg.data.rows:
        train = RowSubset(train, read_rows(cfg.data.rows, len(train)))
    if cfg.data.validation:
        return validation_split(train, cfg.data.eval_fraction, cfg.run.seed)
    return train, held


def eval_sources(cfg) -> tuple[Source, Source]:
    """(the rows a kNN bank or a probe is fitted on, the rows it is scored on): ``build_sources``,
    with the held-out rows taken out of the first when they were taken from it."""
    train, held = build_sources(cfg)
    return bank_rows(train, held), held


def bank_rows(train: Source, held: Source) -> Source:
    """``train`` without the rows ``held`` took from it (a share of ``data.path`` held out for the
    monitor, still trained on): a query must not find itself among its neighbours."""
    if isinstance(held, RowSubset) and held.parent is train:
        return RowSubset(train, np.setdiff1d(np.arange(len(train)), held.positions))
    return train


def validation_split(train: Source, fraction: float, seed: int) -> tuple[Source, Source]:
    """(the rest, a seeded ``fraction`` of ``train``'s rows): disjoint, so neither the training step
    nor the kNN monitor's bank sees a row it is scored on."""
    order = np.random.default_rng([seed, 0x7A11D]).permutation(len(train))
    held = max(1, int(len(train) * fraction))
    return RowSubset(train, order[held:]), RowSubset(train, order[:held])


def read_rows(path: str, n: int) -> np.ndarray:
    """Row positions listed one per line in ``path`` (``#`` comments allowed): unique, within 0..n-1."""
    import fsspec  # the file may be on any fsspec URL, as the shards are

    try:
        with fsspec.open(path, "r") as fh:
            lines = [ln.split("#")[0].strip() for ln in fh]
        rows = np.array([int(ln) for ln in lines if ln], dtype=np.int64)
    except (OSError, ValueError) as e:
        raise DataError(f"data.rows: {path!r} is not a list of row numbers, one per line ({e})") from None
    if not len(rows) or rows.min() < 0 or rows.max() >= n or len(np.unique(rows)) != len(rows):
        raise DataError(f"data.rows: {path!r} must list distinct row numbers in 0..{n - 1} (the training rows)")
    return rows


def _all_sources(cfg) -> tuple[Source, Source]:
    d = cfg.data
    if d.dataset == "demo":
        return demo_sources(d.eval_fraction, d.num_samples)

    train: Source = ParquetSource(d.path, d.image_size, d.channels, d.on_corrupt)
    if d.preload:  # decoded once here; rows that did not decode (on_corrupt: skip) are left out
        b = train.read_all()
        train = ArraySource(b.images[b.valid], b.labels[b.valid], b.index[b.valid], name=f"preloaded {d.path}")
    if d.eval_path:
        return train, ParquetSource(d.eval_path, d.image_size, d.channels, d.on_corrupt)
    n = len(train)
    held = np.random.default_rng(cfg.run.seed).permutation(n)[: max(1, int(n * d.eval_fraction))]
    return train, RowSubset(train, held)  # positions only: rows are read when the monitor asks


def eval_rounds(source: Source, chunk: int, rank: int, world: int, device="cpu"):
    """``rounds`` as the network takes them: (index int64, normalised float images, or None for an
    empty round) on ``device``."""
    for index, images in rounds(source, chunk, rank, world):
        idx = torch.as_tensor(index, dtype=torch.long, device=device)
        empty = images is None or not len(idx)
        yield idx, None if empty else eval_view(torch.as_tensor(images).to(device))


def method_class(cfg):
    from raycl.methods import REGISTRY  # here, not at the top: the methods import raycl.data.views

    return REGISTRY[cfg.method.name]


def needs_every_label(cfg) -> bool:
    """The method's loss reads class labels on every row (an unlabeled row would be a class of its own)."""
    return method_class(cfg).needs_every_label(cfg.method)


def check_data(cfg) -> dict:
    """On the driver, before any worker starts: the shards exist, their columns have the right types,
    labels are -1 or class ids, indices are unique and fit the method's per-sample store, and a
    supervised method gets a label on every row. Returns {"train": summary, "eval": summary}
    (summary: rows, labeled, classes, max_index); the built-in data needs no check."""

    d, m = cfg.data, cfg.method
    if d.dataset == "demo":
        return {}

    method = method_class(cfg)
    largest = method.largest_label(m)
    max_label = MAX_CLASSES - 1 if largest is None else largest
    out = {}
    for key, url in (("train", d.path), ("eval", d.eval_path)):
        if url:
            source = ParquetSource(url, d.image_size, d.channels, d.on_corrupt)
            out[key] = {**source.scan(max_label), "note": conversion_note(source, d, key)}
    tr = out["train"]
    if needs_every_label(cfg) and tr["labeled"] < tr["rows"]:
        raise DataError(
            f"data.path: method {m.name!r} learns from class labels, but {tr['rows'] - tr['labeled']} "
            f"of {tr['rows']} rows are unlabeled (label -1); use a method that "
            "learns without labels or label every row"
        )
    store = method.sample_store_size(m)
    if store is not None and tr["max_index"] >= store:
        raise DataError(
            f"method.{method.sample_store_key}: {store} rows, but the shards hold sample index "
            f"{tr['max_index']}; set method.{method.sample_store_key} >= {tr['max_index'] + 1}"
        )
    return out


def conversion_note(source, d, key: str) -> str | None:
    """A line saying how the shards' images are converted to what the model takes (colour to grey,
    grey to RGB, another size), printed once on the driver: a silent conversion hides a wrong path
    or a wrong data.channels. None when the first image already fits."""
    first = source.peek()
    if first is None:
        return None
    w, h, bands = first
    field = "data.path" if key == "train" else "data.eval_path"
    changes = []
    if (bands >= 3) != (d.channels == 3):
        what = "colour" if bands >= 3 else "grey"
        changes.append(f"{what} images become {'grey' if d.channels == 1 else 'RGB'} (data.channels: {d.channels})")
    if (w, h) != (d.image_size, d.image_size):
        changes.append(f"{w}x{h} px images are resized to {d.image_size} px (data.image_size)")
    if not changes:
        return None
    note = f"{field}: {'; '.join(changes)}"
    log.warning(note)
    return PREFIX + note


def eval_ready(train: Source, held_out: Source) -> str | None:
    """None when kNN / linear evaluation can run, else the one line saying why it is skipped."""
    for name, src in (("training", train), ("held-out", held_out)):
        if not src.has_labels():
            return f"no labeled rows in the {name} split (every label is -1): kNN monitor and linear probe skipped"
    return None


__all__ = [
    "ArraySource",
    "Batch",
    "Block",
    "EpochLoader",
    "RowSubset",
    "Source",
    "bank_rows",
    "build_sources",
    "check_data",
    "eval_ready",
    "eval_sources",
    "rounds",
    "subset",
    "validation_split",
]
