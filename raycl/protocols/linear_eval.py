"""Linear evaluation (the protocol MoCo, SimCLR, CLSA and InterCLR report): a linear head on the
checkpoint's frozen backbone, trained on random crop + flip views as a Ray Train run of the method
``linear_eval`` on the checkpoint's workers, scored on every labeled held-out row each epoch."""

from __future__ import annotations

from raycl.config import Config, apply_overrides, ensure_config, read_yaml
from raycl.data import check_data
from raycl.log import get as get_logger
from raycl.methods.linear_eval import divergence
from raycl.protocols.base import Protocol, Subject
from raycl.train.checkpoint import load_checkpoint_model, model_file
from raycl.train.result import best_epoch, history, train

log = get_logger(__name__)

# The optimizer and schedule when no recipe is given (SGD on the head, cosine from lr 0.1 at batch
# 256, 10 epochs); recipe:linear/moco_imagenet and recipe:linear/simclr_imagenet hold the papers'.
DEFAULT_RECIPE = "recipe:linear/default"


def linear_config(checkpoint: str, recipe: str | None = None, overrides: list[str] | None = None) -> Config:
    """The config of a linear evaluation of ``checkpoint``: its run's data, model and workers,
    ``method: linear_eval`` on its model.pt, the recipe's sections (default: ``DEFAULT_RECIPE``) (its
    ``model`` aside: the backbone is the checkpoint's), then ``overrides``."""
    path = model_file(checkpoint)
    pretrained, _ = load_checkpoint_model(path)
    raw = pretrained.to_dict()
    classes = check_data(pretrained).get("train", {}).get("classes") or 10  # the built-in digits: 10
    raw["method"] = {"name": "linear_eval", "checkpoint": path, "num_classes": max(2, classes)}
    raw["run"]["name"] = f"{pretrained.run.name}-linear"
    for section, values in read_yaml(recipe or DEFAULT_RECIPE, "linear recipe").items():
        if section != "model" and isinstance(values, dict):
            raw[section] = {**raw.get(section, {}), **values}
    return ensure_config(apply_overrides(raw, overrides or []))


def trained(cfg: Config, metric: str, address: str | None) -> dict:
    """Train ``cfg`` (a head under evaluation) and report its last and best epochs as ``metric``:
    ``<metric>_top1``/``_top5`` (last), ``best_<metric>_top1``/``_top5``, ``<metric>_best_epoch``,
    ``<metric>_run_dir``, ``<metric>_checkpoint``; a head that diverged reports None for each figure
    and says why in ``<metric>_diverged``."""
    run = train(cfg, address)
    figures = {k: run.get(k) for k in (f"{metric}_top1", f"{metric}_top5")} | best_epoch(run["checkpoint"], metric)
    where = {f"{metric}_run_dir": run["run_dir"], f"{metric}_checkpoint": run["checkpoint"]}
    reason = divergence(history(run["checkpoint"]), getattr(cfg.method, "num_classes", 2))
    if reason is not None:
        log.warning(reason)
        figures = dict.fromkeys(figures)  # a diverged head's top-1 is chance, never a figure
    return figures | where | {f"{metric}_diverged": reason}


class LinearEvaluation(Protocol):
    name = "linear_eval"
    summary = "a linear head on the frozen backbone, trained on augmented views; recipe:linear/..."
    metrics = (
        "linear_eval_top1",
        "linear_eval_top5",
        "best_linear_eval_top1",
        "best_linear_eval_top5",
        "linear_eval_best_epoch",
        "linear_eval_diverged",
        "linear_eval_run_dir",
        "linear_eval_checkpoint",
    )
    frozen = False
    options = ("recipe", "overrides", "address")

    def evaluate(self, subject: Subject) -> dict:
        o = subject.options
        cfg = linear_config(subject.trained_from(self.name), o.get("recipe"), o.get("overrides"))
        return trained(cfg, self.name, o.get("address"))
