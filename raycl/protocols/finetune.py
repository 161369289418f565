"""Semi-supervised fine-tuning (the SimCLR protocol InterCLR, SimCLIC and ImCLR report): the whole
network, from the checkpoint (or, ``from_scratch``, from random init: the baseline), trained with a
linear head on a class-balanced fraction of each class's labeled rows, as a Ray Train run of the
method ``finetune``."""

from __future__ import annotations

import os

from raycl.config import Config, apply_overrides, ensure_config
from raycl.data import check_data
from raycl.data.label_subset import label_subset
from raycl.errors import ConfigError
from raycl.files import write_atomic
from raycl.protocols.base import Protocol, Subject
from raycl.protocols.linear_eval import linear_config, trained


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


class FineTuning(Protocol):
    name = "finetune"
    summary = "the whole network fine-tuned on a label_fraction of each class's rows; or from_scratch"
    metrics = (
        "finetune_top1",
        "finetune_top5",
        "best_finetune_top1",
        "best_finetune_top5",
        "finetune_best_epoch",
        "finetune_diverged",
        "finetune_run_dir",
        "finetune_checkpoint",
    )
    frozen = False
    options = ("label_fraction", "from_scratch", "recipe", "overrides", "address")

    def evaluate(self, subject: Subject) -> dict:
        o = subject.options
        if o.get("label_fraction") is None:
            raise ConfigError("--label-fraction: the finetune protocol needs the share of labeled rows, (0, 1]")
        start = subject.trained_from(self.name)
        cfg = finetune_config(
            start, o["label_fraction"], bool(o.get("from_scratch")), o.get("recipe"), o.get("overrides")
        )
        return trained(cfg, self.name, o.get("address"))
