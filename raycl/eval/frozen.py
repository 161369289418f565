"""Evaluation of a frozen encoder on a run's held-out rows: the kNN monitor, the held-out features'
effective rank and a linear classifier (``protocol``: "linear", a softmax by SGD, or "logreg",
regularised logistic regression), and the floors a trained encoder must beat, measured the same way
on the same rows: the encoder at random init and the raw pixels under their best plain preprocessing."""

from __future__ import annotations

import torch

from raycl.data import eval_ready, eval_sources
from raycl.eval import effective_rank, extract, knn_top1, linear_probe
from raycl.eval.features import rows_per_forward
from raycl.eval.logreg import select_and_fit
from raycl.eval.pixels import PREPROCESSINGS, StoredPixels, best, preprocess
from raycl.eval.report import Ticker
from raycl.log import get as get_logger
from raycl.methods import build_method

log = get_logger(__name__)

# How ``raycl eval`` fits its linear classifier (``evaluate_backbone``).
PROTOCOLS = ("linear", "logreg")


def _features(cfg, backbone: torch.nn.Module, sources, what: str = "encoder", quiet: bool = False):

    train_src, eval_src = sources
    e, seed, bs = cfg.eval, cfg.run.seed, rows_per_forward(cfg.data.channels, cfg.data.image_size)
    out = []
    for split, src, most in (("training", train_src, e.max_train_samples), ("held-out", eval_src, e.max_eval_samples)):
        ticker = None if quiet else Ticker(f"{what} features of {split} rows", "rows")
        out += list(extract(backbone, src, batch_size=bs, max_rows=most, seed=seed, progress=ticker))
    return tuple(out)


def evaluate_backbone(
    cfg,
    backbone: torch.nn.Module,
    linear: bool = True,
    what: str = "encoder",
    quiet: bool = False,
    protocol: str = "linear",
) -> dict:
    """kNN monitor (cosine, k, T from cfg.eval), the held-out features' effective rank and, when
    ``linear``, a linear classifier on frozen features: ``protocol`` "linear" (softmax by SGD,
    ``linear_top1``) or "logreg" (regularised logistic regression, C chosen on held-out training
    rows, ``logreg_*``). Progress lines on stderr unless ``quiet``."""

    sources = eval_sources(cfg)  # once: opening Parquet shards reads every footer
    skip = eval_ready(*sources)
    if skip:
        log.warning(skip)
        return {"knn_top1": None, **({f"{protocol}_top1": None} if linear else {}), "skipped": skip}
    tr, tr_y, te, te_y = _features(cfg, backbone, sources, what, quiet)
    return evaluate_features(cfg, tr, tr_y, te, te_y, linear, what, quiet, protocol)


def evaluate_features(cfg, tr, tr_y, te, te_y, linear=True, what="encoder", quiet=False, protocol="linear"):
    """The protocols of ``evaluate_backbone`` on features already extracted."""
    out = {"knn_top1": knn_top1(tr, tr_y, te, te_y, cfg.eval.knn_k, cfg.eval.knn_temperature)}
    out["effective_rank"] = effective_rank(te)  # of the held-out features: collapse shows without labels
    if linear and protocol == "logreg":
        ticker = None if quiet else Ticker(f"{what} logistic regression", "values of C", every_s=10.0)
        out |= select_and_fit(tr, tr_y, te, te_y, seed=cfg.run.seed, progress=ticker) or {"logreg_top1": None}
    elif linear:
        ticker = None if quiet else Ticker(f"{what} linear probe", "epochs", every_s=10.0)
        out["linear_top1"] = linear_probe(
            tr, tr_y, te, te_y, cfg.eval.linear_epochs, cfg.eval.linear_lr, seed=cfg.run.seed, progress=ticker
        )
    return out


# Raw pixels as features cost rows x C x H x W floats; past this the floor is skipped and said so.
PIXEL_FLOOR_BYTES = 4 << 30


def floors(cfg, linear: bool = True, quiet: bool = False, protocol: str = "linear") -> dict:
    """What a trained encoder must beat, on the same rows and protocol: the same encoder at random
    init (seed ``run.seed``) and the raw pixels under their best plain preprocessing
    (``random_init_*``, ``pixels_*``; ``pixels_knn_preprocessing`` and the like name the winner)."""
    init = random_init_eval(cfg, linear=linear, quiet=quiet, protocol=protocol)
    out = {f"random_init_{k}": v for k, v in init.items() if k != "skipped"}
    rows = (cfg.eval.max_train_samples or 0) + (cfg.eval.max_eval_samples or 0)
    pixel_bytes = 4 * cfg.data.channels * cfg.data.image_size**2 * rows
    if not rows or pixel_bytes > PIXEL_FLOOR_BYTES:
        log.warning(
            f"raw-pixel floor skipped: {rows or 'every'} rows of {cfg.data.image_size} px would need more "
            f"than {PIXEL_FLOOR_BYTES >> 30} GiB (lower eval.max_train_samples)"
        )
        return out
    return out | {f"pixels_{k}": v for k, v in pixel_floor(cfg, linear, quiet, protocol).items()}


def pixel_floor(cfg, linear: bool = True, quiet: bool = False, protocol: str = "linear") -> dict:
    """The raw pixels of the same rows under each plain preprocessing (stored, mean-centred,
    standardised with training statistics; raycl.eval.pixels), every protocol on each; the floor
    is the best per protocol, with ``<protocol>_preprocessing`` naming the one that gave it."""
    sources = eval_sources(cfg)
    if eval_ready(*sources):  # no labeled rows: the random-init floor has said why
        return {"knn_top1": None, **({f"{protocol}_top1": None} if linear else {})}
    tr, tr_y, te, te_y = _features(cfg, StoredPixels(), sources, "raw-pixel", quiet)
    scores = {}
    for how in PREPROCESSINGS:
        a, b = preprocess(tr, te, how)
        scores[how] = evaluate_features(cfg, a, tr_y, b, te_y, linear, f"raw-pixel ({how})", quiet, protocol)
    return best(scores)


def random_init_eval(cfg, linear: bool = False, quiet: bool = False, protocol: str = "linear") -> dict:
    """``evaluate_backbone`` of the config's method encoder at random init (seed ``run.seed``): the
    floor a trained encoder must beat."""

    torch.manual_seed(cfg.run.seed)
    encoder = build_method(cfg, cfg.data.channels).encoder()
    return evaluate_backbone(cfg, encoder, linear, "random-init", quiet, protocol)


def random_init_knn(cfg) -> float:
    return random_init_eval(cfg, quiet=True)["knn_top1"]
