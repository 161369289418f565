"""The raw-pixel floor is the strongest of the pixels' plain preprocessings, per protocol: never below
any of the stored values, the mean-centred and the standardised pixels (training statistics only),
each computed here by hand in NumPy from the images themselves, and it names the one that won."""

import numpy as np
import pytest
import torch

from raycl.config import load_config
from raycl.eval import knn_top1, linear_probe

OVERRIDES = ["data.num_samples=800", "eval.linear_epochs=5"]


def by_hand(cfg):
    """(train, train labels, test, test labels) as stored values in [0, 1], flattened, from the
    sources raycl evaluates on, and the three preprocessings written out with NumPy."""
    from raycl.data import eval_sources

    tr, te = eval_sources(cfg)
    blk_tr, blk_te = tr.read_positions(np.arange(len(tr))), te.read_positions(np.arange(len(te)))
    a = blk_tr.images.reshape(len(blk_tr.images), -1).astype(np.float64) / 255.0
    b = blk_te.images.reshape(len(blk_te.images), -1).astype(np.float64) / 255.0
    mean, std = a.mean(0), a.std(0, ddof=1)
    std[std == 0] = 1.0
    variants = {"stored": (a, b), "centred": (a - mean, b - mean), "standardised": ((a - mean) / std, (b - mean) / std)}
    t = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    return {k: (t(p), torch.tensor(blk_tr.labels), t(q), torch.tensor(blk_te.labels)) for k, (p, q) in variants.items()}


def test_the_pixel_floor_is_never_below_any_plain_preprocessing_and_names_the_winner():
    from raycl.api import pixel_floor

    cfg = load_config("recipe:demo", OVERRIDES)
    floor = pixel_floor(cfg, ("knn", "rank", "linear_probe"), quiet=True)
    variants = by_hand(cfg)
    knn = {k: knn_top1(*v, cfg.eval.knn_k, cfg.eval.knn_temperature) for k, v in variants.items()}
    linear = {k: linear_probe(*v, cfg.eval.linear_epochs, cfg.eval.linear_lr, seed=cfg.run.seed) for k, v in variants.items()}
    assert floor["knn_top1"] == pytest.approx(max(knn.values()), abs=1e-6)
    assert knn[floor["knn_preprocessing"]] == pytest.approx(floor["knn_top1"], abs=1e-6)
    assert floor["linear_probe_top1"] >= max(linear.values()) - 1 / 1000  # one held-out digit: float order in the probe
    assert floor["linear_probe_preprocessing"] in knn
    # on these digits the stored values beat the model's normalised input by far (0.905 vs 0.817 on all rows)
    normalised = variants["stored"]
    shifted = knn_top1((normalised[0] - 0.5) / 0.25, normalised[1], (normalised[2] - 0.5) / 0.25, normalised[3],
                       cfg.eval.knn_k, cfg.eval.knn_temperature)
    assert floor["knn_top1"] > shifted + 0.03


def test_the_preprocessings_use_training_statistics_only():
    from raycl.eval.pixels import preprocess

    g = torch.Generator().manual_seed(0)
    train, test = torch.rand(50, 6, generator=g), torch.rand(20, 6, generator=g)
    for how in ("centred", "standardised"):
        a, b = preprocess(train, test, how)
        a2, b2 = preprocess(train, test * 3 + 1, how)
        assert torch.equal(a, a2) and not torch.equal(b, b2)      # the test rows never move the statistics
    a, _ = preprocess(train, test, "standardised")
    assert torch.allclose(a.mean(0), torch.zeros(6), atol=1e-6) and torch.allclose(a.std(0), torch.ones(6), atol=1e-5)
    constant = torch.ones(10, 3)
    a, b = preprocess(constant, constant, "standardised")
    assert torch.equal(a, torch.zeros(10, 3)) and torch.isfinite(b).all()   # a constant pixel stays 0
    with pytest.raises(ValueError, match="unknown pixel preprocessing"):
        preprocess(train, test, "whitened")


def test_best_takes_the_highest_per_metric_and_the_first_on_a_tie():
    from raycl.eval.pixels import best

    scores = {"stored": {"knn_top1": 0.90, "linear_probe_top1": 0.80, "effective_rank": 3.0},
              "centred": {"knn_top1": 0.85, "linear_probe_top1": 0.81, "effective_rank": 4.0},
              "standardised": {"knn_top1": 0.90, "linear_probe_top1": 0.81, "effective_rank": 5.0}}
    out = best(scores)
    assert out == {"knn_top1": 0.90, "knn_preprocessing": "stored", "linear_probe_top1": 0.81,
                   "linear_probe_preprocessing": "centred", "effective_rank": 3.0}


def test_the_floors_table_names_the_winning_preprocessing():
    from raycl.eval.report import floors_table

    text = floors_table({"knn_top1": 0.9, "linear_probe_top1": 0.95, "pixels_knn_top1": 0.905, "pixels_linear_probe_top1": 0.88,
                         "pixels_knn_preprocessing": "stored", "pixels_linear_probe_preprocessing": "standardised"})
    assert "raw pixels       0.9050" in text
    assert text.splitlines()[-1] == ("raw pixels: the best of stored, mean-centred and standardised values "
                                     "(kNN top-1 stored, linear probe standardised)")
