"""An evaluation protocol from outside raycl: the example package ``examples/toy-protocol`` registers
one through the ``raycl.protocols`` entry-point group; `raycl protocols` lists it and `raycl eval`
runs it on the encoder and on both floors, without a line of raycl edited. A broken entry point is
one clear error, and only when asked for."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from test_export import checkpoint

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "toy-protocol"
GOOD = 'toy_centroid = "toy_protocol:NearestCentroid"\n'
BROKEN = 'toy_gone = "toy_protocol:NotThere"\n'  # added to the copy only: an entry point that does not import


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy-protocol")
    pkg = root / "pkg"
    shutil.copytree(EXAMPLE, pkg, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    pyproject = (pkg / "pyproject.toml").read_text()
    assert GOOD in pyproject, "examples/toy-protocol/pyproject.toml no longer registers toy_centroid"
    (pkg / "pyproject.toml").write_text(pyproject.replace(GOOD, GOOD + BROKEN))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(root / "site"), str(pkg)], check=True, capture_output=True, timeout=300)
    return root / "site"


def raycl_cli(site, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "raycl", *args], env=env, capture_output=True, text=True, timeout=600)


def centroid_top1(train, train_y, test, test_y):
    """The nearest class centroid by cosine, in NumPy."""
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    train = unit(train)
    centroids = unit(np.stack([train[train_y == c].sum(0) for c in range(train_y.max() + 1)]))
    return float(((unit(test) @ centroids.T).argmax(1) == test_y).mean())


def test_a_protocol_from_another_package_is_listed_and_runs_on_the_encoder_and_both_floors(site, tmp_path):
    from raycl.data import build_sources
    from raycl.eval import extract
    from raycl.eval.pixels import StoredPixels, preprocess

    listed = raycl_cli(site, "protocols")
    assert listed.returncode == 0 and any(line.split()[0] == "toy_centroid" for line in listed.stdout.splitlines())
    folder, cfg, method = checkpoint(tmp_path, "model.width=8", "data.num_samples=300")
    p = raycl_cli(site, "eval", str(folder), "--protocol", "knn,toy_centroid")
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert {"knn_top1", "toy_centroid_top1", "random_init_toy_centroid_top1", "pixels_toy_centroid_top1",
            "pixels_toy_centroid_preprocessing"} <= set(out) and "linear_probe_top1" not in out, out
    assert "toy centroid top-1" in p.stdout   # the floors table gives the plugin's metric a column
    train_src, eval_src = build_sources(cfg)
    seed = cfg.run.seed
    tr, tr_y = (t.numpy() for t in extract(method.encoder(), train_src, max_rows=cfg.eval.max_train_samples, seed=seed))
    te, te_y = (t.numpy() for t in extract(method.encoder(), eval_src, max_rows=cfg.eval.max_eval_samples, seed=seed))
    assert out["toy_centroid_top1"] == pytest.approx(centroid_top1(tr, tr_y, te, te_y), abs=1.01 / len(te_y))
    px = [extract(StoredPixels(), src, max_rows=n, seed=seed) for src, n in
          ((train_src, cfg.eval.max_train_samples), (eval_src, cfg.eval.max_eval_samples))]
    (ptr, ptr_y), (pte, pte_y) = px
    by_how = {}
    for how in ("stored", "centred", "standardised"):
        a, b = preprocess(ptr, pte, how)
        by_how[how] = centroid_top1(a.numpy(), ptr_y.numpy(), b.numpy(), pte_y.numpy())
    assert out["pixels_toy_centroid_top1"] == pytest.approx(max(by_how.values()), abs=1.01 / len(te_y)), by_how


def test_a_broken_protocol_entry_point_is_one_line_and_only_for_the_eval_that_names_it(site, tmp_path):
    folder, _, _ = checkpoint(tmp_path, "model.width=8", "data.num_samples=200")
    bad = raycl_cli(site, "eval", str(folder), "--protocol", "toy_gone", "--no-floors")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "--protocol: 'toy_gone': entry point 'toy_protocol:NotThere' does not import" in bad.stderr
    unknown = raycl_cli(site, "eval", str(folder), "--protocol", "svm", "--no-floors")
    assert unknown.returncode == 2 and "--protocol: 'svm' is not one of" in unknown.stderr
    assert "toy_centroid" in unknown.stderr and "toy_gone" not in unknown.stderr
    ok = raycl_cli(site, "eval", str(folder), "--protocol", "knn", "--no-floors")
    assert ok.returncode == 0 and json.loads(ok.stdout.strip().splitlines()[-1])["knn_top1"] is not None
