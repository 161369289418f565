import json
import subprocess
import sys

import numpy as np
import pytest

from raycl.data import ArraySource, EpochLoader
from raycl.data.demo import demo_sources, load_mnist_5k
from raycl.data.parquet import ParquetSource, encode_png, write_shards
from raycl.errors import DataError


def digits(n=50):
    images, labels = load_mnist_5k()
    return images[:n], labels[:n]


def test_demo_dataset_is_real_mnist_with_stratified_holdout():
    images, labels = load_mnist_5k()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    train, held = demo_sources(0.2)
    assert len(train) == 4000 and len(held) == 1000
    assert np.bincount(held.read_all().labels).tolist() == [100] * 10
    assert train.read_all().index.tolist() == list(range(4000))


@pytest.mark.parametrize("root", ["local", "memory"])
def test_parquet_round_trip(tmp_path, root):
    url = str(tmp_path / "shards") if root == "local" else "memory://raycl-test/shards"
    images, labels = digits(45)
    write_shards(url, np.arange(100, 145), [encode_png(im) for im in images], labels,
                 rows_per_shard=20, row_group_size=7)
    src = ParquetSource(url, 28, 1)
    assert len(src) == 45 and len(src.paths) == 3
    got = src.read_all()
    assert np.array_equal(got.images, images)
    assert np.array_equal(got.labels, labels)
    assert got.index.tolist() == list(range(100, 145))


def corrupt_shards(url, bad_rows=(3, 15)):
    images, labels = digits(24)
    data = [encode_png(im) for im in images]
    for r in bad_rows:
        data[r] = b"\x89PNG not really"
    write_shards(url, np.arange(24), data, labels, rows_per_shard=12, row_group_size=12)
    return images


def test_corrupt_rows_error_names_row_index_and_shard(tmp_path):
    url = str(tmp_path / "bad")
    corrupt_shards(url)
    src = ParquetSource(url, 28, 1, on_corrupt="error")
    with pytest.raises(DataError) as e:
        src.read_block(0)
    assert "row index 3" in str(e.value) and "part-00000.parquet" in str(e.value)
    with pytest.raises(DataError, match=r"row index 15 .*part-00001\.parquet"):
        ParquetSource(url, 28, 1).read_block(1)


def test_corrupt_rows_skipped_and_counted(tmp_path):
    url = str(tmp_path / "bad")
    images = corrupt_shards(url)
    src = ParquetSource(url, 28, 1, on_corrupt="skip")
    loader = EpochLoader(src, 24, rank=0, world=1, seed=0)
    (batch,) = list(loader.batches(0))
    assert batch.skipped == 2
    assert not {3, 15} & set(batch.index.tolist())
    for i, im in zip(batch.index, batch.images):   # refilled slots hold real rows
        assert np.array_equal(im, images[i])


def test_epoch_split_sees_every_sample_with_equal_steps():
    n, G, W = 1000, 96, 3
    src = ArraySource(np.zeros((n, 1, 2, 2), np.uint8), np.arange(n), block_size=128)
    loaders = [EpochLoader(src, G, r, W, seed=5) for r in range(W)]
    per_rank = [[b.index for b in ld.batches(2)] for ld in loaders]
    assert {len(p) for p in per_rank} == {loaders[0].steps_per_epoch} == {11}
    seen = np.concatenate([np.concatenate(p) for p in per_rank])
    assert set(seen.tolist()) == set(range(n))
    assert len(seen) - n == 11 * G - n          # only the last batch's padding repeats
    again = [b.index for b in EpochLoader(src, G, 1, W, seed=5).batches(2)]
    assert all(np.array_equal(x, y) for x, y in zip(again, per_rank[1]))
    other = np.concatenate([b.index for b in EpochLoader(src, G, 1, W, seed=5).batches(3)])
    assert not np.array_equal(other, np.concatenate(per_rank[1]))


@pytest.mark.parametrize("accum", [1, 2])
def test_in_memory_global_micro_batches_do_not_depend_on_the_worker_count(accum):
    """Worker r's m-th micro-batch of a step is the r-th slice of the step's m-th global micro-batch,
    and that global micro-batch is the same set of samples, in the same order, at 1, 2, 3 or 4 workers."""
    n, G = 500, 48
    src = ArraySource(np.zeros((n, 1, 2, 2), np.uint8), np.arange(n), block_size=64)

    def global_micro_batches(W):
        per_rank = [[b.index for b in EpochLoader(src, G, r, W, seed=5, grad_accum=accum).batches(1)]
                    for r in range(W)]
        mb = G // (W * accum)
        return [np.concatenate([per_rank[r][s][m * mb:(m + 1) * mb] for r in range(W)])
                for s in range(len(per_rank[0])) for m in range(accum)]

    one = global_micro_batches(1)
    for W in (2, 3, 4):
        assert all(np.array_equal(a, b) for a, b in zip(global_micro_batches(W), one, strict=True))


def test_last_batch_is_completed_with_the_epochs_first_rows():
    """100 rows, batch 32: the 4th batch holds rows 96..99 of the epoch's order, then its first 28
    (as DistributedSampler pads), not a repeated last row."""
    src = ArraySource(np.zeros((100, 1, 2, 2), np.uint8), np.arange(100), block_size=30)
    ld = EpochLoader(src, 32, seed=3, shuffle_window=1)   # window 1: the epoch order as dealt
    order = np.concatenate([b.index for b in ld.batches(1)])
    assert len(order) == 128 and sorted(order[:100].tolist()) == list(range(100))
    assert order[100:].tolist() == order[:28].tolist()


def test_drop_last_and_start_step():
    src = ArraySource(np.zeros((100, 1, 2, 2), np.uint8), np.arange(100))
    ld = EpochLoader(src, 32, seed=0, drop_last=True)
    batches = list(ld.batches(0))
    assert len(batches) == 3 and len(np.unique(np.concatenate([b.index for b in batches]))) == 96
    assert np.array_equal(list(ld.batches(0, start_step=2))[0].index, batches[2].index)


@pytest.mark.slow  # a CLI in a subprocess
def test_data_convert_cli(tmp_path):
    from PIL import Image

    images, labels = digits(12)
    for k, (im, y) in enumerate(zip(images, labels)):
        d = tmp_path / "folder" / f"class_{y}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im[0]).save(d / f"{k}.png")
    dest = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "raycl", "data", "convert", str(tmp_path / "folder"), str(dest),
                        "--rows-per-shard", "5"], capture_output=True, text=True, check=True)
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["images"] == 12 and summary["shards"] == 3
    got = ParquetSource(str(dest), 28, 1).read_all()
    classes = summary["classes"]
    # every stored image decodes to one of the originals, under its folder's class
    for im, y in zip(got.images, got.labels):
        k = next(k for k in range(12) if np.array_equal(images[k], im))
        assert classes[y] == f"class_{labels[k]}"
    bad = subprocess.run([sys.executable, "-m", "raycl", "data", "convert", str(tmp_path / "none"), str(dest)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr


def test_demo_subset_covers_every_class():
    train, _ = demo_sources(0.2, num_samples=500)
    counts = np.bincount(train.read_all().labels, minlength=10)
    assert len(train) == 500 and counts.min() >= 30


@pytest.mark.parametrize("stored, channels, size, says", [
    ((3, 32), 1, 28, ["colour images become grey (data.channels: 1)", "32x32 px images are resized to 28 px"]),
    ((1, 28), 3, 28, ["grey images become RGB (data.channels: 3)"]),
    ((3, 32), 3, 32, []),
])
def test_the_driver_says_how_shard_images_are_converted_for_the_model(tmp_path, capsys, stored, channels, size, says):
    """An RGB 32 px dataset read by a 1-channel 28 px model is converted: said once, on the driver."""
    from raycl.config import load_config
    from raycl.data import check_data

    bands, px = stored
    rng = np.random.default_rng(0)
    data = [encode_png(rng.integers(0, 255, (bands, px, px), dtype=np.uint8)) for _ in range(8)]
    write_shards(str(tmp_path / "s"), np.arange(8), data, np.arange(8) % 2)
    cfg = load_config(None, ["data.dataset=parquet", f"data.path={tmp_path / 's'}", f"data.channels={channels}",
                             f"data.image_size={size}"])
    note = check_data(cfg)["train"]["note"]
    err = capsys.readouterr().err
    if not says:
        assert note is None and err == ""
        return
    assert note.startswith("[raycl] data.path: ") and all(s in note for s in says), note
    assert err == note + "\n"


def test_data_validation_splits_the_training_rows_and_leaves_the_held_out_ones_unused(tmp_path):
    """data.validation: the training step and the kNN monitor's bank get one part of the training rows,
    the monitor's queries the other (a seeded eval_fraction), and the held-out shards none of either."""
    import numpy as np

    from raycl.config import load_config
    from raycl.data import build_sources

    def ids(src):
        return np.concatenate([src.read_raw(i).index for i in range(len(src.block_sizes)) if src.block_sizes[i]])

    images, labels = digits(120)
    write_shards(str(tmp_path / "s"), np.arange(120), [encode_png(im) for im in images], labels,
                 rows_per_shard=50, row_group_size=16)
    for data in (["data.num_samples=500"], ["data.dataset=parquet", f"data.path={tmp_path / 's'}",
                                            f"data.eval_path={tmp_path / 's'}"]):
        plain_train, _ = build_sources(load_config(None, data))
        train, held = build_sources(load_config(None, [*data, "data.validation=true", "data.eval_fraction=0.3"]))
        t, h = ids(train), ids(held)
        assert len(h) == int(len(plain_train) * 0.3) and len(t) + len(h) == len(plain_train)
        assert not set(t.tolist()) & set(h.tolist())
        assert sorted(np.concatenate([t, h]).tolist()) == sorted(ids(plain_train).tolist())
        again = build_sources(load_config(None, [*data, "data.validation=true", "data.eval_fraction=0.3"]))[1]
        other_seed = build_sources(load_config(None, [*data, "data.validation=true", "data.eval_fraction=0.3",
                                                      "run.seed=1"]))[1]
        assert np.array_equal(ids(again), h) and not np.array_equal(ids(other_seed), h)


def test_a_held_out_share_of_the_training_shards_is_not_in_the_knn_bank(tmp_path):
    """Without data.eval_path the monitor's queries are a share of data.path (still trained on): the
    kNN bank and the probe's training rows are the other rows, so no query votes for itself. The
    figure equals a kNN written here over the pixels with the queries taken out of the bank."""
    import numpy as np
    import torch

    from raycl.api import evaluate_backbone
    from raycl.config import load_config
    from raycl.data import build_sources, eval_sources
    from raycl.data.views import eval_view
    from raycl.eval import knn_top1

    images, _ = digits(300)
    labels = np.random.default_rng(0).integers(0, 10, 300)   # labels no neighbour can predict
    write_shards(str(tmp_path / "s"), np.arange(300), [encode_png(im) for im in images], labels,
                 rows_per_shard=100, row_group_size=32)
    cfg = load_config(None, ["data.dataset=parquet", f"data.path={tmp_path / 's'}", "eval.knn_k=5"])
    train, held = build_sources(cfg)
    bank, queries = eval_sources(cfg)
    assert len(train) == 300 and len(held) == 60 and len(bank) == 240 and np.array_equal(queries.positions, held.positions)
    q = held.positions
    rest = np.setdiff1d(np.arange(300), q)
    flat = eval_view(torch.from_numpy(images)).flatten(1)
    expect = knn_top1(flat[rest], torch.from_numpy(labels[rest]), flat[q], torch.from_numpy(labels[q]), 5, 0.1)
    got = evaluate_backbone(cfg, torch.nn.Flatten(), ("knn",), quiet=True)["knn_top1"]
    assert got == pytest.approx(expect)
    with_itself = knn_top1(flat, torch.from_numpy(labels), flat[q], torch.from_numpy(labels[q]), 5, 0.1)
    assert with_itself > 0.9 and got < 0.3      # the bias this removes: a query voting for itself
