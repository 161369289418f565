"""The public Python face of raycl: train, evaluate, demo. The same calls the CLI makes.

Ray is imported inside the calls that start or join a cluster (train, sweep, the bank server), so
evaluation, views and conversion run in a notebook or script without it."""

from __future__ import annotations

import importlib.resources
import logging
import os

from raycl.config import Config, ensure_config, load_config
from raycl.data.label_subset import label_subset
from raycl.data.parquet import convert_image_folder
from raycl.data.preview import write_grid
from raycl.data.torchvision_source import convert_torchvision, is_torchvision
from raycl.errors import DataError
from raycl.eval.neighbours import neighbours as nearest
from raycl.export import export_backbone
from raycl.log import get as get_logger
from raycl.protocols import door, protocols
from raycl.protocols.door import (
    DEFAULT,
    PIXEL_FLOOR_BYTES,
    check_stored_data,
    evaluate_backbone,
    evaluate_features,
    floors,
    pixel_floor,
    random_init_eval,
    random_init_knn,
)
from raycl.protocols.finetune import finetune_config
from raycl.protocols.linear_eval import linear_config
from raycl.train import result
from raycl.train.checkpoint import load_checkpoint_model
from raycl.train.result import history
from raycl.train.run_names import demo_run_name

log = get_logger(__name__)

# The protocols' door and floors (raycl.protocols.door) and the label subset (raycl.data) are part
# of the public face too.
__all__ = [
    "DEFAULT", "PIXEL_FLOOR_BYTES", "bank_server", "connect", "convert", "demo", "evaluate", "evaluate_backbone",
    "evaluate_features", "export", "finetune", "finetune_config", "floors", "history", "knn", "label_subset",
    "latest_checkpoint", "linear", "linear_config", "load_config", "neighbours", "pixel_floor", "protocols",
    "random_init_eval",
    "random_init_knn", "sweep", "train", "views",
]  # fmt: skip


def demo_config_path() -> str:
    return str(importlib.resources.files("raycl") / "recipes" / "demo.yaml")


def train(cfg: Config | dict, address: str | None = None) -> dict:
    """Pre-train on Ray Train; returns the last epoch's metrics plus ``run_dir`` and ``checkpoint``.
    ``cfg`` (a Config, or a dict of sections) and its data are checked before Ray starts."""

    return result.train(ensure_config(cfg), address)


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
    return write_grid(cfg, out, samples)


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
    hold only their share of the features (the protocol ``knn_all``); the data is checked first."""
    return evaluate(checkpoint, ["knn_all"], workers=workers, k=k, temperature=temperature, address=address)


def linear(checkpoint: str, recipe: str | None = None, overrides: list[str] | None = None,
           address: str | None = None) -> dict:  # fmt: skip
    """Linear evaluation of a checkpoint's frozen backbone as a Ray Train run (the protocol
    ``linear_eval``, configured by ``linear_config``): the last and best epochs' top-1 and top-5."""
    return evaluate(checkpoint, ["linear_eval"], recipe=recipe, overrides=overrides, address=address)


def finetune(checkpoint: str, label_fraction: float, from_scratch: bool = False, recipe: str | None = None,
             overrides: list[str] | None = None, address: str | None = None) -> dict:  # fmt: skip
    """Fine-tune (or train from scratch) on a label subset as a Ray Train run (the protocol
    ``finetune``, configured by ``finetune_config``): the last and best epochs' top-1 and top-5."""
    return evaluate(checkpoint, ["finetune"], label_fraction=label_fraction, from_scratch=from_scratch,
                    recipe=recipe, overrides=overrides, address=address)  # fmt: skip


def evaluate(checkpoint: str, protocols=DEFAULT, with_floors: bool = True, **options) -> dict:
    """The ``protocols`` (registered names, see ``raycl protocols``) of a checkpoint on its run's
    held-out rows and, for the frozen ones (``with_floors``), the random-init and raw-pixel floors
    measured the same way; ``options`` go to the trained protocols. Data is checked before any is read."""
    return door.evaluate(checkpoint, protocols, with_floors, **options)


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
