"""Linear evaluation (the protocol MoCo, SimCLR, CLSA and InterCLR report): a linear classifier on
the frozen features of a pre-trained backbone.

    f = the checkpoint's backbone: no gradient, eval mode (BatchNorm statistics frozen)
    for x, y in loader:                              # random crop + flip (LinearEval.views)
        h = standardise(pool(f_layer(aug(x))))       # BatchNorm without affine parameters (MAE's probe)
        loss = cross_entropy(W h + b, y)
    every epoch: top-1 and top-5 of W standardise(f(x)) + b on the held-out rows (un-augmented)

The features are standardised before the head because their scale is whatever pre-training left:
the BatchNorm running statistics of a briefly trained backbone can give activations in the
thousands, on which an SGD head at the papers' lr diverges to chance while the features are good
(kNN sees only their directions). The standardisation is a BatchNorm over the global micro-batch
(its statistics do not depend on the worker count), its running statistics used on the held-out
rows; ``method.standardize: false`` gives the bare head of the papers.

As a method it trains in raycl's worker loop: DeepSpeed, LARS, checkpoints and resume, elastic
workers and sweeps come with it (``raycl linear`` builds its config from a checkpoint's).
``method.layer`` picks the features: the backbone's output, or a ResNet stage (InterCLR's Table 1
probes several depths), globally average-pooled.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from raycl.collectives.batchnorm import GlobalBatchNorm
from raycl.errors import CheckpointError, ConfigError
from raycl.fields import MAX_CLASSES
from raycl.files import safe_load
from raycl.methods.base import Method, MethodBatch, MethodConfig, View
from raycl.models import build_backbone

STAGES = ("layer1", "layer2", "layer3", "layer4")


class ProtocolConfig(MethodConfig):
    """What linear evaluation and fine-tuning share: the checkpoint, the features, the classes."""

    path_fields: ClassVar[tuple[str, ...]] = ("checkpoint",)

    checkpoint: str | None = Field(None, description="model.pt of the pre-trained checkpoint whose backbone is "
                                   "evaluated (raycl linear fills it in)")  # fmt: skip
    layer: str = Field("output", description="features: the backbone's output, or a ResNet stage layer1..layer4 "
                       "(global average pool)")  # fmt: skip
    num_classes: int = Field(10, ge=2, le=MAX_CLASSES, description="classifier outputs")

    def check(self, cfg) -> None:
        if not self.checkpoint:
            raise ConfigError(
                "method.checkpoint: linear_eval needs the pre-trained checkpoint (raycl linear CHECKPOINT)"
            )
        resnet = cfg.model.backbone in ("resnet18", "resnet50")
        if self.layer != "output" and not (resnet and self.layer in STAGES):
            layers = ", ".join(("output", *STAGES)) if resnet else "output"
            raise ConfigError(f"method.layer: {self.layer!r} is not a layer of {cfg.model.backbone}; one of {layers}")


class Features(nn.Module):
    """A ResNet's pooled features after ``layer`` (``output``: the backbone itself)."""

    def __init__(self, backbone: nn.Module, layer: str, frozen: bool = True):
        super().__init__()
        self.backbone, self.layer, self.frozen = backbone, layer, frozen

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # whoever switches modes (evaluation restores training mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer == "output":
            return self.backbone(x)
        b: Any = self.backbone  # a torchvision ResNet (LinearEvalConfig.check)
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        for stage in STAGES[: STAGES.index(self.layer) + 1]:
            x = getattr(b, stage)(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class LinearEvalConfig(ProtocolConfig):
    standardize: bool = Field(True, description="standardise the frozen features before the head (BatchNorm "
                              "without affine parameters over the global micro-batch, as MAE's probe)")  # fmt: skip


class LinearEval(Method):
    name = "linear_eval"
    held_out_metric = "linear_eval"
    Config: type[ProtocolConfig] = LinearEvalConfig
    n_views = 1

    def views(self) -> list[View]:
        return [View("view 1", augment="crop_flip")]  # the protocols' random crop and flip

    @classmethod
    def needs_every_label(cls, method_cfg) -> bool:
        return True

    @classmethod
    def largest_label(cls, method_cfg) -> int | None:
        return method_cfg.num_classes - 1

    def __init__(self, cfg, channels: int):
        super().__init__()
        m = cfg.method
        self.backbone = build_backbone(cfg, channels)
        try:
            self.backbone.load_state_dict(pretrained_backbone(m.checkpoint))
        except RuntimeError as e:  # torch lists every mismatched tensor: the first says enough
            first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
            raise CheckpointError(
                f"method.checkpoint: the backbone in {m.checkpoint!r} does not fit this config's model "
                f"section ({first}); raycl linear takes model.* from the checkpoint"
            ) from None
        self.backbone.requires_grad_(False)
        self.features = Features(self.backbone.eval(), m.layer)
        with torch.no_grad():  # the width of the chosen layer's features
            size = cfg.data.image_size
            width = self.features(torch.zeros(1, channels, size, size)).shape[1]
        self.standardise = feature_standardiser(width) if m.standardize else nn.Identity()
        self.head = nn.Linear(width, m.num_classes)
        self.train()

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: BatchNorm keeps the pre-trained statistics
        return self

    def forward(self, batch: MethodBatch):
        with torch.no_grad():
            feats = self.features(batch.views[0])
        logits = self.head(self.standardise(feats))
        loss = F.cross_entropy(logits, batch.labels)
        return loss, {"train_top1": (logits.argmax(1) == batch.labels).float().mean().detach()}

    def held_out_scores(self) -> nn.Module:
        return nn.Sequential(self.features, self.standardise, self.head)


def divergence(history: list[dict], classes: int) -> str | None:
    """Why a trained head's accuracy must not be reported, or None. A head that predicts nothing
    useful has a training loss near log(classes); one whose last epoch's mean loss is not finite, or
    above 3 log(classes), diverged (its top-1 is chance, whatever the features hold)."""
    losses = [m["loss"] for m in history if "loss" in m]
    if not losses:
        return None
    chance = math.log(classes)
    if not math.isfinite(losses[-1]) or losses[-1] > 3 * chance:
        return (
            f"the linear head diverged: its training loss ended at {losses[-1]:.4g} (a head that guesses has "
            f"log({classes}) = {chance:.2f}); its top-1 is not reported. Lower optim.base_lr, or keep "
            f"method.standardize: true (the features' scale is what pre-training left)"
        )
    return None


def feature_standardiser(width: int) -> nn.Module:
    """A BatchNorm without affine parameters whose training statistics are the global micro-batch's,
    whatever the worker count (on the held-out rows: its running statistics)."""
    return GlobalBatchNorm(width, eps=1e-6, affine=False)


def pretrained_backbone(path: str) -> dict:
    """The ``backbone.*`` tensors of a raycl model.pt (weights only: a file raycl wrote, read as tensors)."""
    payload = safe_load(path, "method.checkpoint")
    state = payload.get("state_dict", {}) if isinstance(payload, dict) else {}
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    if not backbone:
        raise CheckpointError(f"method.checkpoint: {path!r} holds no backbone weights")
    return backbone


class FinetuneConfig(ProtocolConfig):
    from_scratch: bool = Field(False, description="the same network from random init (the baseline the "
                               "self-supervised gain is measured against); method.checkpoint unused")  # fmt: skip

    def check(self, cfg) -> None:
        if self.layer != "output":
            raise ConfigError("method.layer: fine-tuning trains the whole backbone; leave layer at output")
        if not self.from_scratch:
            super().check(cfg)


class Finetune(LinearEval):
    """Semi-supervised fine-tuning (the SimCLR protocol InterCLR, SimCLIC and ImCLR report): the whole
    network, initialised from the checkpoint (or, ``from_scratch``, from random init), trained with a
    linear head on the labeled subset ``data.rows`` lists; BatchNorm trains too.

        for x, y in subset:   loss = cross_entropy(W f(aug(x)) + b, y)      # f and W both learn
    """

    name = "finetune"
    held_out_metric = "finetune"
    Config = FinetuneConfig

    def __init__(self, cfg, channels: int):
        Method.__init__(self)
        m = cfg.method
        self.backbone = build_backbone(cfg, channels)
        if not m.from_scratch:
            self.backbone.load_state_dict(pretrained_backbone(m.checkpoint))
        self.features = Features(self.backbone, "output", frozen=False)
        self.standardise = nn.Identity()  # the whole network trains: its features need no rescaling
        self.head = nn.Linear(self.backbone.out_dim, m.num_classes)

    def train(self, mode: bool = True):
        return Method.train(self, mode)  # nothing frozen

    def forward(self, batch: MethodBatch):
        logits = self.head(self.features(batch.views[0]))
        loss = F.cross_entropy(logits, batch.labels)
        return loss, {"train_top1": (logits.argmax(1) == batch.labels).float().mean().detach()}
