"""`raycl data convert torchvision:FashionMNIST` on Debian's Fashion-MNIST (data nobody here made),
compared row by row with the package's idx files read by numpy."""
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from raycl.data.parquet import ParquetSource

DEB = "/usr/share/datasets/fashion-mnist"
pytestmark = pytest.mark.skipif(not os.path.exists(f"{DEB}/t10k-images-idx3-ubyte.gz"),
                                reason="Debian's dataset-fashion-mnist is not installed (apt-get install -y dataset-fashion-mnist)")


def idx(name):
    raw = gzip.open(f"{DEB}/{name}.gz").read()
    return np.frombuffer(raw, np.uint8, offset=16 if "images" in name else 8)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Where torchvision's FashionMNIST(root, download=False) reads: root/FashionMNIST/raw/<idx files>."""
    r = tmp_path_factory.mktemp("tv")
    (r / "FashionMNIST" / "raw").mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-images-idx3-ubyte",
                 "train-labels-idx1-ubyte"):
        (r / "FashionMNIST" / "raw" / name).write_bytes(gzip.open(f"{DEB}/{name}.gz").read())
    return r


@pytest.mark.parametrize("keep_order", [False, True])
def test_fashion_mnist_test_split_converts_row_for_row(root, tmp_path, keep_order):
    dest = tmp_path / "shards"
    p = subprocess.run([sys.executable, "-m", "raycl", "data", "convert", "torchvision:FashionMNIST", str(dest),
                        "--root", str(root), "--split", "test", "--rows-per-shard", "4000", "--seed", "3"]
                       + (["--keep-order"] if keep_order else []), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["images"] == 10_000 and out["shards"] == 3 and len(out["classes"]) == 10
    assert "10000/10000 images" in p.stderr                       # progress per shard
    images = idx("t10k-images-idx3-ubyte").reshape(-1, 28, 28)
    labels = idx("t10k-labels-idx1-ubyte").astype(np.int64)
    order = np.arange(10_000) if keep_order else np.random.default_rng(3).permutation(10_000)
    src = ParquetSource(str(dest), 28, 1)
    assert len(src) == 10_000 and sorted(src.block_sizes) == [1000] * 10
    rows = np.arange(0, 10_000, 37)
    got = src.read_positions(rows)
    assert np.array_equal(got.images[:, 0], images[order[rows]])    # PNG round trip is lossless
    assert np.array_equal(got.labels, labels[order[rows]]) and np.array_equal(got.index, rows)
    first = labels[order[:1000]]                                     # a row group holds many classes
    assert (np.bincount(first, minlength=10) > 0).sum() == (10 if not keep_order else len(set(first)))
