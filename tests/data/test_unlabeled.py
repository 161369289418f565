"""Self-supervised training on images without labels, and mixed labeled/unlabeled data: rows with
label -1 train like any other; evaluation uses the labeled rows only, or is skipped saying why."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from raycl.eval import knn_top1, linear_probe


def brute_knn(tr, tr_y, te, te_y, k, t):
    """Weighted kNN written out row by row (the reference), over labeled rows only."""
    tr, tr_y = tr[tr_y >= 0], tr_y[tr_y >= 0]
    te, te_y = te[te_y >= 0], te_y[te_y >= 0]
    tr, te = F.normalize(tr.double(), dim=1), F.normalize(te.double(), dim=1)
    hits = 0
    for x, y in zip(te, te_y):
        sim = tr @ x
        top = sim.argsort(descending=True)[:k]
        votes = {}
        for i in top.tolist():
            votes[int(tr_y[i])] = votes.get(int(tr_y[i]), 0.0) + float(torch.exp(sim[i] / t))
        hits += max(votes, key=votes.get) == int(y)
    return hits / len(te_y)


def test_knn_and_linear_use_only_labeled_rows():
    g = torch.Generator().manual_seed(0)
    tr, te = torch.randn(200, 8, generator=g), torch.randn(60, 8, generator=g)
    tr_y, te_y = torch.randint(0, 4, (200,), generator=g), torch.randint(0, 4, (60,), generator=g)
    tr_y[::3], te_y[::4] = -1, -1
    assert knn_top1(tr, tr_y, te, te_y, k=10, temperature=0.1) == pytest.approx(brute_knn(tr, tr_y, te, te_y, 10, 0.1))
    lab, tlab = tr_y >= 0, te_y >= 0
    assert linear_probe(tr, tr_y, te, te_y, epochs=3) == linear_probe(tr[lab], tr_y[lab], te[tlab], te_y[tlab], epochs=3)
    none = torch.full_like(tr_y, -1)
    assert knn_top1(tr, none, te, te_y) is None and linear_probe(tr, tr_y, te, torch.full_like(te_y, -1)) is None


def test_class_ids_far_apart_cost_nothing():
    """Labels 7 and 10**10 are two classes: no [rows, 10**10] vote table (that was a 48 GB allocation)."""
    tr = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    tr_y = torch.tensor([7, 7, 10**10, 10**10])
    te, te_y = torch.tensor([[1.0, 0.05], [0.05, 1.0]]), torch.tensor([7, 10**10])
    assert knn_top1(tr, tr_y, te, te_y, k=2) == 1.0
    assert linear_probe(tr, tr_y, te, te_y, epochs=50, batch_size=4) == 1.0


def flat_folder(root, n, labeled_every=0):
    """n real digits as PNG files directly under root (no class folders)."""
    from PIL import Image

    from raycl.data.demo import load_mnist_5k

    images, labels = load_mnist_5k()
    pick = np.random.default_rng(0).permutation(len(images))[:n]
    os.makedirs(root, exist_ok=True)
    for j, i in enumerate(pick):
        Image.fromarray(images[i, 0]).save(os.path.join(root, f"img{j:05d}.png"))
    return images[pick], labels[pick]


def test_flat_folder_of_images_trains_and_checkpoints(ray_cluster, tiny_cfg, tmp_path, capsys):
    """`raycl data convert` of a flat folder -> every label -1 -> `raycl train` trains 2 epochs on 2
    workers, writes both checkpoints, reports no knn_top1; `raycl eval` says why it skips."""
    from raycl import api
    from raycl.cli import main
    from raycl.data.parquet import ParquetSource

    flat_folder(tmp_path / "imgs", 256)
    shards = str(tmp_path / "shards")
    assert main(["data", "convert", str(tmp_path / "imgs"), shards, "--rows-per-shard", "128"]) == 0
    src = ParquetSource(shards, 28, 1)
    assert len(src) == 256 and src.scan()["labeled"] == 0
    cfg = tiny_cfg("data.dataset=parquet", f"data.path={shards}", "data.num_samples=null", "run.name=flat")
    out = api.train(cfg)
    assert out["epoch"] == 2 and out["global_step"] == 8 and np.isfinite(out["loss"])
    assert "knn_top1" not in out
    run = os.path.dirname(out["checkpoint"])
    assert len([d for d in os.listdir(run) if d.startswith("checkpoint_") and os.path.isdir(os.path.join(run, d))]) == 2
    assert [h["epoch"] for h in api.history(out["checkpoint"])] == [1, 2]
    # A directory Ray is still copying into (not in its checkpoint registry) is never picked, even
    # with a newer step; the registered newest one is.
    import json
    import shutil

    half = os.path.join(run, "checkpoint_2099-01-01_00-00-00.000000")
    shutil.copytree(out["checkpoint"], half)
    state = json.load(open(os.path.join(half, "raycl_state.json")))
    json.dump({**state, "global_step": 99}, open(os.path.join(half, "raycl_state.json"), "w"))
    os.remove(os.path.join(half, "model.pt"))
    assert api.latest_checkpoint(cfg) == out["checkpoint"]
    capsys.readouterr()
    ev = api.evaluate(out["checkpoint"])
    assert ev["knn_top1"] is None and ev["linear_probe_top1"] is None and "no labeled rows" in ev["skipped"]
    assert "no labeled rows in the training split" in capsys.readouterr().err


def test_mixed_labels_report_knn_on_the_labeled_part(ray_cluster, tiny_cfg, tmp_path):
    """Half the rows unlabeled: the epoch's knn_top1 equals a row-by-row kNN over the labeled rows
    of the checkpoint's features (train bank and held-out queries alike; the bank without the
    held-out share of the rows, which a query would otherwise find itself in)."""
    from raycl import api
    from raycl.data import eval_sources
    from raycl.data.demo import load_mnist_5k
    from raycl.data.parquet import encode_png, write_shards
    from raycl.eval import extract

    images, labels = load_mnist_5k()
    pick = np.random.default_rng(1).permutation(len(images))[:256]
    y = labels[pick].copy()
    y[1::2] = -1
    url = str(tmp_path / "mixed")
    write_shards(url, np.arange(256), [encode_png(im) for im in images[pick]], y, rows_per_shard=128,
                 row_group_size=64)
    cfg = tiny_cfg("data.dataset=parquet", f"data.path={url}", "data.num_samples=null", "run.epochs=1",
                   "distributed.workers=1", "run.name=mixed")
    out = api.train(cfg)
    cfg2, method = api.load_checkpoint_model(out["checkpoint"])
    train_src, eval_src = eval_sources(cfg2)
    tr, tr_y = extract(method.encoder(), train_src)
    te, te_y = extract(method.encoder(), eval_src)
    assert len(tr) == 256 - len(te) and (tr_y == -1).sum() + (te_y == -1).sum() == 128 and (te_y >= 0).any() and (te_y == -1).any()
    assert out["knn_top1"] == pytest.approx(brute_knn(tr, tr_y, te, te_y, cfg.eval.knn_k, cfg.eval.knn_temperature),
                                            abs=1e-6)


def test_every_torch_load_in_raycl_is_weights_only():
    """No file raycl reads may run code: every torch.load goes through checkpoint.safe_load."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2] / "raycl"
    loads = {str(p.relative_to(root)): len(re.findall(r"torch\.load\(", p.read_text())) for p in root.rglob("*.py")}
    assert {k: v for k, v in loads.items() if v} == {"files.py": 1}
    src = (root / "files.py").read_text()
    assert "weights_only=True" in src and "weights_only=False" not in src


@pytest.mark.parametrize("name", ["rng_rank0.pt", "method_state.pt", "snapshot-00000010.pt"])
def test_resume_files_with_a_pickle_payload_are_refused(tmp_path, name):
    """The RNG, method-state and BankServer snapshot files are read the same way: a payload that
    would write a marker file is refused with one line naming the file, and never runs."""
    from raycl.errors import CheckpointError
    from raycl.train.checkpoint import rng_state, safe_load, set_rng_state

    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"rows": torch.zeros(2), "payload": Evil()}, tmp_path / name)
    with pytest.raises(CheckpointError, match=name) as e:
        safe_load(str(tmp_path / name), "file")
    assert "\n" not in str(e.value) and not marker.exists()
    torch.save(rng_state(), tmp_path / "ok.pt")      # what raycl writes itself loads fine
    set_rng_state(safe_load(str(tmp_path / "ok.pt")))
