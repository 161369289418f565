"""The one way a checkpoint is evaluated: the protocols named, from the registry, on one subject; the
frozen ones share one feature extraction, and with the floors they are measured again, the same way
on the same rows, for the encoder at random init and for the raw pixels."""

from __future__ import annotations

import torch

from raycl.config import check_paths
from raycl.data import check_data
from raycl.eval.pixels import PREPROCESSINGS, StoredPixels, best, preprocess
from raycl.log import get as get_logger
from raycl.methods import build_method
from raycl.protocols.base import Protocol, Subject
from raycl.protocols.registry import chosen
from raycl.train.checkpoint import load_checkpoint_model

log = get_logger(__name__)

# What ``raycl eval`` runs when no --protocol is given.
DEFAULT = ("knn", "rank", "linear_probe")

# Raw pixels as features cost rows x C x H x W floats; past this the floor is skipped and said so.
PIXEL_FLOOR_BYTES = 4 << 30


def evaluate(checkpoint: str, protocols=DEFAULT, with_floors: bool = True, quiet: bool = False, **options) -> dict:
    """The ``protocols`` (names) of a checkpoint's encoder on its run's held-out rows, and, for the
    frozen ones (``with_floors``), the random-init and raw-pixel floors (``random_init_*``, ``pixels_*``).
    ``options`` go to the trained protocols (``recipe``, ``overrides``, ``address``, ``label_fraction``,
    ``from_scratch``, ``workers``, ``k``, ``temperature``). The data is checked before any is read."""
    todo = chosen(protocols)
    cfg, method = load_checkpoint_model(checkpoint)
    check_stored_data(cfg)
    out = run(todo, Subject(cfg, method.encoder(), checkpoint=checkpoint, options=options, quiet=quiet))
    on_features = [p.name for p in todo if p.frozen]
    if with_floors and on_features and not out.get("skipped"):
        out |= floors(cfg, on_features, quiet)
    return out


def frozen(protocols) -> list[Protocol]:
    """The frozen ones of ``protocols`` (names): what runs on a backbone's features and on the floors."""
    return [p for p in chosen(protocols) if p.frozen]


def check_stored_data(cfg) -> None:
    """The data a checkpoint's run names still exists and passes the checks training runs."""
    check_paths(cfg)
    check_data(cfg)


def run(todo: list[Protocol], subject: Subject) -> dict:
    """Each protocol on ``subject``, in order; frozen ones on rows with no label on a side report None
    for each metric, and ``skipped`` says why."""
    out: dict = {}
    for protocol in todo:
        skip = subject.unready if protocol.frozen else None
        if skip:
            if "skipped" not in out:
                log.warning(skip)
            out |= dict.fromkeys(protocol.metrics) | {"skipped": skip}
            continue
        out |= protocol.evaluate(subject)
    return out


def evaluate_backbone(cfg, backbone: torch.nn.Module, protocols=DEFAULT, what: str = "encoder",
                      quiet: bool = False) -> dict:  # fmt: skip
    """The frozen ``protocols`` of ``backbone`` (images -> features) on ``cfg``'s rows."""
    return run(frozen(protocols), Subject(cfg, backbone, what, quiet=quiet))


def evaluate_features(cfg, tr, tr_y, te, te_y, protocols=DEFAULT, what: str = "features", quiet: bool = False):
    """The frozen ``protocols`` on features already extracted."""
    return run(frozen(protocols), Subject(cfg, None, what, quiet=quiet, extracted=(tr, tr_y, te, te_y)))


def floors(cfg, protocols=DEFAULT, quiet: bool = False) -> dict:
    """What a trained encoder must beat, on the same rows and protocols: the same encoder at random
    init (seed ``run.seed``) and the raw pixels under their best plain preprocessing
    (``random_init_*``, ``pixels_*``; ``pixels_knn_preprocessing`` and the like name the winner)."""
    init = random_init_eval(cfg, protocols, quiet)
    out = {f"random_init_{k}": v for k, v in init.items() if k != "skipped"}
    rows = (cfg.eval.max_train_samples or 0) + (cfg.eval.max_eval_samples or 0)
    pixel_bytes = 4 * cfg.data.channels * cfg.data.image_size**2 * rows
    if not rows or pixel_bytes > PIXEL_FLOOR_BYTES:
        log.warning(
            f"raw-pixel floor skipped: {rows or 'every'} rows of {cfg.data.image_size} px would need more "
            f"than {PIXEL_FLOOR_BYTES >> 30} GiB (lower eval.max_train_samples)"
        )
        return out
    return out | {f"pixels_{k}": v for k, v in pixel_floor(cfg, protocols, quiet).items()}


def pixel_floor(cfg, protocols=DEFAULT, quiet: bool = False) -> dict:
    """The raw pixels of the same rows under each plain preprocessing (stored, mean-centred,
    standardised with training statistics; raycl.eval.pixels), every protocol on each; the floor
    is the best per protocol, with ``<protocol>_preprocessing`` naming the one that gave it."""
    todo = frozen(protocols)
    pixels = Subject(cfg, StoredPixels(), "raw-pixel", quiet=quiet)
    if pixels.unready:  # no labeled rows: the random-init floor has said why
        return {m: None for p in todo for m in p.metrics}
    tr, tr_y, te, te_y = pixels.features()
    scores = {}
    for how in PREPROCESSINGS:
        a, b = preprocess(tr, te, how)
        scores[how] = run(todo, Subject(cfg, None, f"raw-pixel ({how})", quiet=quiet, extracted=(a, tr_y, b, te_y)))
    return best(scores)


def random_init_eval(cfg, protocols=DEFAULT, quiet: bool = False) -> dict:
    """The frozen ``protocols`` of the config's method encoder at random init (seed ``run.seed``): the
    floor a trained encoder must beat."""
    torch.manual_seed(cfg.run.seed)
    encoder = build_method(cfg, cfg.data.channels).encoder()
    return evaluate_backbone(cfg, encoder, protocols, "random-init", quiet)


def random_init_knn(cfg) -> float:
    return random_init_eval(cfg, ("knn",), quiet=True)["knn_top1"]
