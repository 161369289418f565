"""What every method is: an nn.Module that turns a batch into (loss, scalars to log)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class MethodBatch:
    views: list[torch.Tensor]  # augmented views, each [b, C, H, W]
    index: torch.Tensor  # int64 [b], global sample ids
    labels: torch.Tensor  # int64 [b], -1 when unknown


class Method(nn.Module):
    """Subclasses build their networks in ``__init__(cfg, channels)`` and implement ``forward``.

    ``backbone`` must be the encoder whose pooled features evaluation uses; ``n_views`` and
    ``augmentation`` tell the data pipeline how many views per sample the method wants, and how made.
    """

    n_views = 2
    augmentation = "simclr"  # "none": the views are the normalised images themselves
    backbone: nn.Module

    def forward(self, batch: MethodBatch) -> tuple[torch.Tensor, dict[str, float]]:  # pragma: no cover
        raise NotImplementedError

    def encoder(self) -> nn.Module:
        """What evaluation (kNN, linear probe) extracts features with: the backbone, unless the
        method feeds it differently at test time (ImCLR's k-fold concatenation)."""
        return self.backbone

    def signature(self) -> dict:
        """What a checkpoint must match to be loaded into this method (name and every shape)."""
        return {"method": self.name, "shapes": {k: list(v.shape) for k, v in self.state_dict().items()}}
