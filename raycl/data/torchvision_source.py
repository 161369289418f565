"""``raycl data convert torchvision:NAME``: a dataset class from ``torchvision.datasets`` -> Parquet
shards, the way users already have CIFAR, Fashion-MNIST or STL-10 on disk.

Rows are written in a seeded random order (the classes of these datasets come in blocks in some
files), images encoded as PNG by a pool of threads a shard at a time, with a progress line per
shard. Nothing is downloaded unless ``download`` is set (``--download``)."""

from __future__ import annotations

import inspect
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from raycl.data.parquet import ShardWriter, check_destination, convert_threads, encode_png
from raycl.errors import DataError

PREFIX = "torchvision:"


def open_dataset(name: str, root: str, split: str, download: bool):
    import torchvision.datasets as tvd  # only for torchvision:NAME sources

    cls = getattr(tvd, name, None)
    if not isinstance(cls, type) or name.startswith("_"):
        raise DataError(
            f"{PREFIX}{name}: torchvision.datasets has no dataset class of that name "
            "(e.g. FashionMNIST, MNIST, CIFAR10, CIFAR100, SVHN, STL10)"
        )

    params = inspect.signature(cls).parameters
    if "train" in params:
        if split not in ("train", "test"):
            raise DataError(f"--split: {name} has 'train' and 'test', not {split!r}")
        kw: dict[str, object] = {"train": split == "train"}
    elif "split" in params:
        kw = {"split": split}
    else:
        kw = {}
    try:
        return cls(root, download=download, **kw)
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        hint = "" if download else "; pass --download where the network is reachable"
        raise DataError(f"{PREFIX}{name} ({split}) not found under --root {root!r}: {str(e).strip()}{hint}") from None


def as_array(item) -> np.ndarray:
    """A dataset's image (PIL image, uint8 tensor or HWC array) -> uint8 [C, H, W]."""
    a = np.asarray(item)
    if a.ndim == 2:
        return a[None]
    if a.ndim == 3 and a.shape[-1] in (1, 3):
        return np.ascontiguousarray(np.transpose(a, (2, 0, 1)))
    if a.ndim == 3 and a.shape[0] in (1, 3):
        return a
    raise DataError(f"an image of shape {a.shape}: expected H x W, H x W x C or C x H x W with C = 1 or 3")


def png_rows(ds):
    """``row(i) -> (PNG bytes, label)`` of a torchvision dataset. MNIST-style and CIFAR-style classes
    hold every image as one uint8 array: rows are read from it without PIL on the way in."""
    data, targets = getattr(ds, "data", None), getattr(ds, "targets", getattr(ds, "labels", None))
    if data is not None and targets is not None and len(data) == len(ds) and np.asarray(data).dtype == np.uint8:
        images, labels = np.asarray(data), np.asarray(targets, dtype=np.int64)
        return lambda i: (encode_png(as_array(images[i])), int(labels[i]))

    def row(i):
        image, label = ds[i]
        return encode_png(as_array(image)), int(label)

    return row


def convert_torchvision(
    spec: str,
    dest_url: str,
    root: str,
    split: str = "train",
    download: bool = False,
    rows_per_shard: int = 10_000,
    shuffle: bool = True,
    seed: int = 0,
    row_group_size: int = 1_000,
    threads: int | None = None,
    log=None,
) -> dict:
    """``torchvision:NAME`` read from ``root`` -> Parquet shards of PNG rows at ``dest_url``, in a
    seeded random order (``shuffle``), a shard at a time by a pool of threads; ``log`` gets a
    progress line per shard. Returns a summary dict."""
    dfs, droot = check_destination(dest_url, rows_per_shard)
    ds = open_dataset(spec[len(PREFIX) :], root, split, download)
    n, row = len(ds), png_rows(ds)
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    dfs.makedirs(droot, exist_ok=True)
    writer = ShardWriter(dfs, droot, rows_per_shard, row_group_size)
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(threads or convert_threads()) as pool:
            for s in range(0, n, rows_per_shard):
                for image, label in pool.map(row, order[s : s + rows_per_shard].tolist()):
                    writer.add(image, label)
                writer.flush(last=True)
                if log is not None:
                    done, rate = writer.rows, writer.rows / (time.perf_counter() - started)
                    log(f"{spec}: {done}/{n} images, {rate:.0f} images/s, ETA {(n - done) / max(rate, 1e-9):.0f} s")
    except BaseException:
        writer.remove_written()  # no half-converted folder left to trip the next attempt
        raise
    shards = writer.shards
    classes = list(getattr(ds, "classes", []) or [])
    return {
        "images": n,
        "classes": classes,
        "shards": len(shards),
        "dest": dest_url,
        "skipped": [],
        "shuffled": shuffle,
        "source": spec,
        "split": split,
    }


def is_torchvision(source: str) -> bool:
    return source.startswith(PREFIX)
