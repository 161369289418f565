"""The public Python face of raycl: train, evaluate, demo. The same calls the CLI makes.

Ray is imported inside the calls that start or join a cluster (train, sweep, the bank server), so
evaluation, views and conversion run in a notebook or script without it."""

from __future__ import annotations

import importlib.resources
import logging
import os
import time

from raycl.config import Config, apply_overrides, check_paths, ensure_config, load_config, read_yaml
from raycl.data import check_data
from raycl.data.label_subset import label_subset
from raycl.data.parquet import convert_image_folder
from raycl.data.preview import grid
from raycl.data.torchvision_source import convert_torchvision, is_torchvision
from raycl.errors import ConfigError, DataError
from raycl.eval.frozen import (
    PIXEL_FLOOR_BYTES,
    PROTOCOLS,
    evaluate_backbone,
    evaluate_features,
    floors,
    pixel_floor,
    random_init_eval,
    random_init_knn,
)
from raycl.eval.neighbours import neighbours as nearest
from raycl.export import export_backbone
from raycl.files import write_atomic
from raycl.log import get as get_logger
from raycl.methods.linear_eval import divergence
from raycl.train.checkpoint import load_checkpoint_model, model_file, read_state, registered_checkpoints
from raycl.train.storage import run_dir

log = get_logger(__name__)

# The frozen-encoder protocols and floors (raycl.eval.frozen) and the label subset (raycl.data) are
# part of the public face too.
__all__ = [
    "PIXEL_FLOOR_BYTES", "PROTOCOLS", "bank_server", "connect", "convert", "demo", "evaluate", "evaluate_backbone",
    "evaluate_features", "export", "finetune", "finetune_config", "floors", "history", "knn", "label_subset",
    "latest_checkpoint", "linear", "linear_config", "load_config", "neighbours", "pixel_floor", "random_init_eval",
    "random_init_knn", "sweep", "train", "views",
]  # fmt: skip


def demo_config_path() -> str:
    return str(importlib.resources.files("raycl") / "recipes" / "demo.yaml")


def train(cfg: Config | dict, address: str | None = None) -> dict:
    """Pre-train on Ray Train; returns the last epoch's metrics plus ``run_dir`` and ``checkpoint``.
    ``cfg`` (a Config, or a dict of sections) and its data are checked before Ray starts."""

    cfg = ensure_config(cfg)
    check_data(cfg)
    from raycl.train.trainer import fit  # imports Ray: only once the input is known to be good

    result = fit(cfg, address)
    out = dict(result.metrics or {})
    out["run_dir"] = result.path
    out["checkpoint"] = result.checkpoint.path if result.checkpoint else None
    return out


def convert(
    source: str,
    dest: str,
    *,
    root: str | None = None,
    split: str = "train",
    download: bool = False,
    rows_per_shard: int = 10_000,
    on_corrupt: str = "error",
    shuffle: bool = True,
    seed: int = 0,
    say=None,
) -> dict:
    """Write Parquet shards (index, image, label) from an image folder (``class/image.png``) or
    ``torchvision:NAME`` (read from ``root``); returns what was written. Progress goes to ``say``
    (default: raycl's logger)."""
    say = say or log.info

    if not is_torchvision(source):
        return convert_image_folder(source, dest, rows_per_shard, on_corrupt, log=say, shuffle=shuffle, seed=seed)
    if not root:
        raise DataError(f"--root: {source} needs the folder torchvision reads it from")
    return convert_torchvision(source, dest, root, split, download, rows_per_shard, shuffle=shuffle, seed=seed, log=say)


def views(cfg: Config | dict, out: str = "views.png", samples: int = 6) -> dict:
    """Write a grid of ``samples`` training images and each view the method makes of them (see
    raycl.data.preview) to ``out`` (PNG); returns the path, the columns and the image size."""

    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= 64:
        raise ConfigError(f"--samples: expected an integer in 1..64, got {samples!r}")
    path = os.path.abspath(os.path.expanduser(out))
    parent = os.path.dirname(path)
    if os.path.isdir(path) or not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        why = "is a directory" if os.path.isdir(path) else f"folder {parent} does not exist or is not writable"
        raise ConfigError(f"--out: cannot write {out!r}: {why}")
    cfg = ensure_config(cfg)
    check_data(cfg)
    g = grid(cfg, samples)
    try:
        g.image.save(path, format="PNG")
    except OSError as e:
        raise ConfigError(f"--out: cannot write {out!r}: {e.strerror or e}") from None
    return {"out": path, "columns": g.columns, "samples": len(g.cells), "size": list(g.image.size)}


def sweep(
    path: str,
    overrides: list[str] | None = None,
    address: str | None = None,
    resume: bool = True,
    num_cpus: int | None = None,
) -> dict:
    """Ray Tune sweep over the ``sweep:`` section of ``path`` (see raycl.tune); ``num_cpus`` sizes a
    local Ray instance (default: this machine's cores)."""
    from raycl.tune import sweep as run_sweep

    return run_sweep(path, overrides, address, resume, num_cpus)


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join a Ray cluster (``address``, else $RAY_ADDRESS) or start a local instance; True when a
    local instance was started. Later ``train``/``sweep`` calls reuse the connection."""
    from raycl.train.trainer import init_ray

    return init_ray(address, num_cpus)


def latest_checkpoint(cfg: Config) -> str | None:
    """The newest checkpoint of ``cfg``'s run so far (local storage), e.g. to plot a run that is
    still training with ``history``."""
    from raycl.train.trainer import latest_local_checkpoint

    return latest_local_checkpoint(cfg)


def neighbours(checkpoint: str, queries: int = 5, k: int = 5, seed: int = 0) -> dict:
    """Nearest training images (cosine, frozen encoder) of ``queries`` random held-out images:
    {"query_images", "neighbour_images" [q, k, ...], "query_labels", "neighbour_labels"}."""
    cfg, method = load_checkpoint_model(checkpoint)
    check_stored_data(cfg)
    return nearest(cfg, method, queries, k, seed)


def bank_server(run_name: str, address: str | None = None):
    """The live BankServer actor of a run with ``method.bank_sync_every`` > 0 (joins Ray if needed).
    Call its methods with ``ray.get(server.cluster_sizes.remote())``, ``.neighbours.remote(i, k)``,
    ``.label_churn.remote()``, ``.stats.remote()``, ``.get_snapshot.remote()``."""
    import ray

    from raycl.train.bank_server import get

    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or "auto", logging_level=logging.WARNING)
    return get(run_name)


def export(checkpoint: str, out: str, fmt: str = "safetensors") -> dict:
    """The backbone of a checkpoint (or of a run's newest) written to ``out`` as tensors only:
    safetensors, or a torchvision ``.pth`` state_dict (see raycl.export)."""
    cfg, method = load_checkpoint_model(checkpoint)
    return export_backbone(cfg, method.backbone, out, fmt) | {"checkpoint": checkpoint}


def knn(checkpoint: str, workers: int = 2, k: int | None = None, temperature: float | None = None,
        address: str | None = None) -> dict:  # fmt: skip
    """Weighted kNN top-1/top-5 over every training row, on ``workers`` Ray Train workers that each
    hold only their share of the features (see raycl.train.knn_run); the data is checked first."""
    cfg, _ = load_checkpoint_model(checkpoint)
    check_stored_data(cfg)
    from raycl.train.knn_run import knn as run_knn  # imports Ray: only once the input is known to be good

    return run_knn(checkpoint, workers, k, temperature, address=address)


# raycl linear's optimizer and schedule when no recipe is given (SGD on the head, cosine from lr 0.1
# at batch 256, 10 epochs); recipe:linear/moco_imagenet and recipe:linear/simclr_imagenet hold the
# papers' protocols.
LINEAR_DEFAULT = "recipe:linear/default"


def linear_config(checkpoint: str, recipe: str | None = None, overrides: list[str] | None = None) -> Config:
    """The config of a linear evaluation of ``checkpoint``: its run's data, model and workers,
    ``method: linear_eval`` on its model.pt, the recipe's sections (default: ``LINEAR_DEFAULT``) (its
    ``model`` aside: the backbone is the checkpoint's), then ``overrides``."""
    path = model_file(checkpoint)
    pretrained, _ = load_checkpoint_model(path)
    raw = pretrained.to_dict()
    classes = check_data(pretrained).get("train", {}).get("classes") or 10  # the built-in digits: 10
    raw["method"] = {"name": "linear_eval", "checkpoint": path, "num_classes": max(2, classes)}
    raw["run"]["name"] = f"{pretrained.run.name}-linear"
    for section, values in read_yaml(recipe or LINEAR_DEFAULT, "linear recipe").items():
        if section != "model" and isinstance(values, dict):
            raw[section] = {**raw.get(section, {}), **values}
    return ensure_config(apply_overrides(raw, overrides or []))


def linear(checkpoint: str, recipe: str | None = None, overrides: list[str] | None = None,
           address: str | None = None) -> dict:  # fmt: skip
    """Linear evaluation of a checkpoint's frozen backbone as a Ray Train run (``linear_config``):
    the last epoch's metrics plus the best epoch's top-1 and top-5."""
    cfg = linear_config(checkpoint, recipe, overrides)
    out = _with_best(train(cfg, address)) | {"pretrained": model_file(checkpoint)}
    reason = divergence(history(out["checkpoint"]), getattr(cfg.method, "num_classes", 2))
    if reason is None:
        return out | {"diverged": None}
    log.warning(reason)
    hidden = ("linear_top1", "linear_top5", "best_linear_top1", "best_linear_top5", "best_epoch")
    return out | dict.fromkeys(hidden) | {"diverged": reason}


def finetune_config(checkpoint: str, label_fraction: float, from_scratch: bool = False, recipe: str | None = None,
                    overrides: list[str] | None = None) -> Config:  # fmt: skip
    """The config of fine-tuning ``checkpoint``'s whole network (or, ``from_scratch``, the same
    architecture from random init) on a class-balanced ``label_fraction`` of the labeled rows; the
    subset is written beside the runs (``<run>-rows-<F>-seed<S>.txt``) and named in ``data.rows``, so
    the two runs, and any repeat, train on the same rows."""
    base = linear_config(checkpoint, recipe, overrides)
    check_data(base)  # unlabeled shards are refused here, with the reason, before a subset is drawn
    rows = label_subset(base, label_fraction, base.run.seed)
    pretrained = base.run.name.removesuffix("-linear")
    path = os.path.join(base.run.storage_path, f"{pretrained}-rows-{label_fraction:g}-seed{base.run.seed}.txt")
    os.makedirs(base.run.storage_path, exist_ok=True)
    header = f"# {len(rows)} rows: {label_fraction:g} of each class's labeled rows, seed {base.run.seed}\n"
    write_atomic(path, header + "\n".join(map(str, rows.tolist())) + "\n")
    raw = base.to_dict()
    keep = ("checkpoint", "layer", "num_classes")  # what the two protocols share (no feature standardiser)
    raw["method"] = {**{k: raw["method"][k] for k in keep}, "name": "finetune", "from_scratch": from_scratch}
    raw["data"]["rows"] = path
    raw["run"]["name"] = f"{pretrained}-{'scratch' if from_scratch else 'finetune'}-{label_fraction:g}"
    return ensure_config(apply_overrides(raw, overrides or []))


def finetune(checkpoint: str, label_fraction: float, from_scratch: bool = False, recipe: str | None = None,
             overrides: list[str] | None = None, address: str | None = None) -> dict:  # fmt: skip
    """Fine-tune (or train from scratch) on a label subset as a Ray Train run; the last epoch's
    metrics plus the best epoch's top-1 and top-5 on the held-out rows."""
    return _with_best(train(finetune_config(checkpoint, label_fraction, from_scratch, recipe, overrides), address))


def _with_best(out: dict) -> dict:
    epochs = [h for h in history(out["checkpoint"]) if "linear_top1" in h]
    best = max(epochs, key=lambda h: h["linear_top1"], default={})
    return out | {"best_linear_top1": best.get("linear_top1"), "best_linear_top5": best.get("linear_top5"),
                  "best_epoch": best.get("epoch")}  # fmt: skip


def check_stored_data(cfg: Config) -> None:
    """The data a checkpoint's run names still exists and passes the checks ``train`` runs."""

    check_paths(cfg)
    check_data(cfg)


def history(checkpoint: str) -> list[dict]:
    """Every epoch's metrics (loss, lr, images/s, kNN top-1) up to a checkpoint, across resumes."""

    return read_state(os.path.expanduser(checkpoint)).get("history", [])


def evaluate(checkpoint: str, linear: bool = True, with_floors: bool = True, protocol: str = "linear") -> dict:
    """kNN and linear top-1 of a checkpoint's encoder on its run's held-out rows (``protocol``: see
    ``evaluate_backbone``), and (``with_floors``) the random-init and raw-pixel floors measured the same
    way. Data is checked before any is read."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    cfg, method = load_checkpoint_model(checkpoint)
    check_stored_data(cfg)
    out = evaluate_backbone(cfg, method.encoder(), linear, protocol=protocol)
    if with_floors and not out.get("skipped"):
        out |= floors(cfg, linear, protocol=protocol)
    return out


def demo(overrides: list[str] | None = None, address: str | None = None, resume: bool = False) -> dict:
    """SimCLR on the built-in digits with 2 workers, then kNN + linear evaluation against the
    random-init and raw-pixel floors. Each call trains a new run (``demo-<time>``) unless ``resume``
    (the newest demo run continues) or ``run.name`` is among the overrides (that run, resumed if it
    has a checkpoint, as ``train`` does)."""
    overrides = list(overrides or [])
    cfg = load_config(demo_config_path(), overrides)
    if not any(o.split("=", 1)[0].strip() == "run.name" for o in overrides):
        name, line = demo_run_name(cfg, resume)
        cfg = load_config(demo_config_path(), overrides + [f"run.name={name}"])
        log.info(line)
    metrics = train(cfg, address)
    ev = evaluate(metrics["checkpoint"])
    return {
        "method": cfg.method.name,
        "epochs": cfg.run.epochs,
        "workers": cfg.distributed.workers,
        **ev,
        "images_per_s": metrics.get("images_per_s"),
        "run_dir": metrics["run_dir"],
        "checkpoint": metrics["checkpoint"],
    }


def demo_run_name(cfg: Config, resume: bool) -> tuple[str, str]:
    """(run name, the line that says which): the newest ``demo-*`` run with a checkpoint when
    ``resume``, else a new ``demo-<time>`` whose folder this call creates, so two demos started at
    once never share one."""

    root = os.path.dirname(run_dir(cfg) or "") or None
    if resume:
        folder = root or ""
        names = os.listdir(folder) if folder and os.path.isdir(folder) else []
        runs = sorted(
            (n for n in names if n.startswith("demo-") and registered_checkpoints(os.path.join(folder, n))),
            key=lambda n: os.path.getmtime(os.path.join(folder, n)),
        )
        if not runs:
            where = cfg.run.storage_path
            raise ConfigError(f"--resume: no demo run with a checkpoint under run.storage_path {where!r}")
        return runs[-1], f"demo: resuming run {runs[-1]!r} in {root}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"demo-{stamp}"
    if root is not None:  # local storage: reserve the folder; a demo started in the same second takes -2, -3, ...
        for n in range(2, 1000):
            try:
                os.makedirs(os.path.join(root, name))
                break
            except FileExistsError:
                name = f"demo-{stamp}-{n}"
    where = root or cfg.run.storage_path
    return name, f"demo: new run {name!r} in {where} (continue it later with: raycl demo --resume)"
