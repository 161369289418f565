"""What every method is: an nn.Module that turns a batch into (loss, scalars to log)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from raycl.config.sections import MethodConfig


@dataclass(frozen=True)
class View:
    """One view a method trains on, as data: the data pipeline makes what this says and nothing
    else (``raycl.data.views.views_for``), and ``raycl views`` draws it under ``title``.

    ``augment``: "configured", SimCLR's pipeline (random resized crop, flip, colour jitter,
    grayscale, blur) at the strengths of the ``data.*`` keys; "paper", the same pipeline at SimCLR's
    own strengths for the view's size, whatever ``data.*`` says; "crop_flip", a crop of area
    [0.5, 1] and a flip only (the usual supervised recipe); "none", the normalised image itself."""

    title: str
    augment: Literal["configured", "paper", "crop_flip", "none"] = "configured"
    size: int | None = None  # the view's side in pixels; None: data.image_size
    strong: bool = False  # then the 14-op strong augmentation (CLSA), drawn 5 times an image
    autoaugment: bool = False  # AutoAugment's CIFAR-10 policy on each image first (ImCLR's option)


@dataclass
class MethodBatch:
    views: list[torch.Tensor]  # augmented views, each [b, C, H, W]
    index: torch.Tensor  # int64 [b], global sample ids
    labels: torch.Tensor  # int64 [b], -1 when unknown


class Method(nn.Module):
    """Subclasses build their networks in ``__init__(cfg, channels)`` and implement ``forward``.

    ``backbone`` must be the encoder whose pooled features evaluation uses; ``views`` tells the data
    pipeline which views of each sample the method wants, as data (``View``).
    What else a method needs from the rest of raycl it declares here (the defaults suit a plain
    two-view contrastive method): the data, config and training loop ask, never test its name.
    """

    name = "method"
    Config: type[MethodConfig] = MethodConfig  # its ``method:`` section
    n_views = 2

    def views(self) -> list[View]:
        """The views of each sample this method trains on, in the order of ``batch.views``; the
        default, ``n_views`` views of SimCLR's pipeline at the ``data.*`` strengths, suits a plain
        contrastive method."""
        return [View(f"view {i + 1}") for i in range(self.n_views)]

    backbone: nn.Module

    # -- what it needs of the data and the config (asked on the driver, before any worker starts) --
    @classmethod
    def needs_every_label(cls, method_cfg) -> bool:
        """The loss reads a class label on every row (an unlabeled row would be a class of its own)."""
        return False

    @classmethod
    def largest_label(cls, method_cfg) -> int | None:
        """The largest class id the method can take (a classifier's outputs); None: any class id."""
        return None

    sample_store_key = "bank_size"  # the method key that sizes its per-sample store, named in errors

    @classmethod
    def sample_store_size(cls, method_cfg) -> int | None:
        """Rows of a per-sample store keyed on the ``index`` column (a memory bank); None: none."""
        return None

    # -- what the training loop calls; the defaults do nothing ------------------------------------
    def init_from_features(self, chunks) -> bool:
        """Fill per-sample state from the initial network's features of every row (``chunks``: this
        worker's share, as (index, normalised images or None) on its device, from
        ``raycl.data.eval_rounds``); returns whether it did (InterCLR's bank, paper section 3.2)."""
        return False

    def gather_state(self) -> dict | None:
        """State a checkpoint keeps beyond the parameters and buffers (a collective when sharded)."""
        return None

    def load_gathered_state(self, state: dict) -> None:
        """Restore what ``gather_state`` returned."""

    def bank_stats(self) -> dict:
        """Per-epoch figures of per-sample state (logged as ``bank/*``)."""
        return {}

    def held_out_scores(self) -> nn.Module | None:
        """A module from normalised images to class scores, scored (top-1, top-5) on the held-out
        rows every epoch in place of the kNN monitor (a classifier under evaluation), reported as
        ``<held_out_metric>_top1`` and ``_top5``; None: kNN."""
        return None

    held_out_metric = "classifier"  # the name of the protocol whose classifier ``held_out_scores`` gives

    def composed_view(self, view: torch.Tensor) -> tuple[str, torch.Tensor] | None:
        """(title, images) of what the network really sees when the method combines views further
        (ImCLR: k views side by side), for ``raycl views``; None when it does not."""
        return None

    def forward(self, batch: MethodBatch) -> tuple[torch.Tensor, dict[str, float]]:  # pragma: no cover
        raise NotImplementedError

    def encoder(self) -> nn.Module:
        """What evaluation (kNN, linear probe) extracts features with: the backbone, unless the
        method feeds it differently at test time (ImCLR's k-fold concatenation)."""
        return self.backbone

    def signature(self) -> dict:
        """What a checkpoint must match to be loaded into this method (name and every shape)."""
        return {"method": self.name, "shapes": {k: list(v.shape) for k, v in self.state_dict().items()}}
