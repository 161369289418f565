"""ImCLR: implicit contrastive learning for supervised training.

    for x, y in loader:                           # each image augmented on its own
        x, y~ = cutmix(x, onehot(y))              # optional, per image, before concatenation
        partners_j = permutations of the batch, j = 1..k-1
        x~ = concat_width(x, x[perm_1], ..., x[perm_{k-1}])
        y~ = (y~ + y~[perm_1] + ...) / k          # multi-hot, sums to 1
        loss = cross_entropy(classifier(f(x~)), soft target y~)
    test time: the same image concatenated k times, one-hot label

k = 1 is plain one-hot cross-entropy: the supervised baseline (`supervised_ce`). Width concatenation
(not height) is the reading of Table 1's parameter deltas (VGG16 +262,144 from a doubled flatten).
AutoAugment (``method.autoaugment``) runs per image in the view pipeline, before all of this.

Semi-supervised (Pi-model, Laine & Aila 2017; ``method.pi_weight`` > 0): two augmented views pass
through the network with the same partners; labelled composed samples (every part labelled) get the
cross-entropy of view 1, every sample gets pi_weight * MSE(softmax(f(x~_1)), softmax(f(x~_2))).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from raycl.errors import ConfigError, DataError
from raycl.fields import MAX_CLASSES, Number
from raycl.methods.base import Method, MethodBatch, MethodConfig, View
from raycl.models import build_backbone


def concat_width(images: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(images, dim=3)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


def cutmix(x: torch.Tensor, target: torch.Tensor, p: float, alpha: float = 1.0):
    """CutMix (Yun et al. 2019) per image: with probability ``p`` a box of area ratio 1 - lam
    (lam ~ Beta(alpha, alpha)) is pasted from a random partner; the target mixes by the exact
    pasted area. Returns (images, soft targets)."""
    n, _, h, w = x.shape
    partner = torch.randperm(n, device=x.device)
    lam = torch.distributions.Beta(alpha, alpha).sample((n,)).to(x.device)
    cut_h, cut_w = (h * (1 - lam).sqrt()).long(), (w * (1 - lam).sqrt()).long()
    cy, cx = (torch.rand(n, device=x.device) * h).long(), (torch.rand(n, device=x.device) * w).long()
    y0, y1 = (cy - cut_h // 2).clamp(0, h), (cy + cut_h // 2).clamp(0, h)
    x0, x1 = (cx - cut_w // 2).clamp(0, w), (cx + cut_w // 2).clamp(0, w)
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    box = ((rows >= y0[:, None]) & (rows < y1[:, None]))[:, :, None] & ((cols >= x0[:, None]) & (cols < x1[:, None]))[
        :, None, :
    ]
    box &= (torch.rand(n, device=x.device) < p)[:, None, None]
    pasted = box.flatten(1).float().mean(1, keepdim=True)
    mixed = torch.where(box[:, None], x[partner], x)
    return mixed, (1 - pasted) * target + pasted * target[partner]


def is_labelled(index: torch.Tensor, fraction: float) -> torch.Tensor:
    """A fixed, seed-free choice of the labelled subset: a multiplicative hash of the sample index."""
    if fraction >= 1:
        return torch.ones_like(index, dtype=torch.bool)
    return ((index * 2654435761) % 2**32).double() / 2**32 < fraction


class KTimes(nn.Module):
    """The test-time encoder: the same image concatenated k times."""

    def __init__(self, backbone: nn.Module, k: int):
        super().__init__()
        self.backbone, self.k, self.out_dim = backbone, k, backbone.out_dim

    def forward(self, x):
        return self.backbone(concat_width([x] * self.k))


class ClassifierConfig(MethodConfig):
    """supervised_ce's keys; ImCLR's add concat_k."""

    num_classes: int = Field(10, ge=2, le=MAX_CLASSES, description="classifier outputs")
    cutmix_p: Number = Field(0.0, ge=0.0, le=1.0, description="CutMix probability per image, before concatenation")
    autoaugment: bool = Field(False, description="AutoAugment (CIFAR-10 policy) per image")
    pi_weight: Number = Field(0.0, ge=0.0, description="Pi-model consistency weight (paper: 20); 0 = off")
    labeled_fraction: Number = Field(1.0, gt=0.0, le=1.0, description="Pi-model: share of samples whose label is used")

    def check(self, cfg) -> None:
        if self.labeled_fraction < 1 and self.pi_weight == 0:
            raise ConfigError(
                "method.labeled_fraction: unlabelled samples are only used by the Pi-model; "
                "set method.pi_weight (the paper uses 20) or leave labeled_fraction at 1"
            )


class ImCLRConfig(ClassifierConfig):
    concat_k: int = Field(2, ge=1, le=16, description="images concatenated along the width")


class ImCLR(Method):
    name = "imclr"
    Config: type[MethodConfig] = ImCLRConfig

    @classmethod
    def needs_every_label(cls, method_cfg) -> bool:
        return method_cfg.pi_weight == 0  # the Pi-model alone learns from unlabeled rows

    @classmethod
    def largest_label(cls, method_cfg) -> int | None:
        return method_cfg.num_classes - 1

    def __init__(self, cfg, channels: int):
        super().__init__()
        m = cfg.method
        self.k, self.num_classes = self.concat_k(cfg), m.num_classes
        self.cutmix_p, self.pi_weight, self.labeled_fraction = m.cutmix_p, m.pi_weight, m.labeled_fraction
        self.autoaugment = m.autoaugment
        self.n_views = 2 if self.pi_weight > 0 else 1
        self.backbone = build_backbone(cfg, channels, concat=self.k)
        self.classifier = nn.Linear(self.backbone.out_dim, self.num_classes)

    def views(self) -> list[View]:
        """The supervised recipe's crop and flip (AutoAugment first, with ``method.autoaugment``);
        a second view for the Pi-model's consistency term."""
        return [View(f"view {i + 1}", augment="crop_flip", autoaugment=self.autoaugment) for i in range(self.n_views)]

    @staticmethod
    def concat_k(cfg) -> int:
        return cfg.method.concat_k

    def encoder(self) -> nn.Module:
        return KTimes(self.backbone, self.k) if self.k > 1 else self.backbone

    def targets(self, labels: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        bad = labelled & ((labels < 0) | (labels >= self.num_classes))
        if bool(bad.any()):
            raise DataError(
                f"{self.name} is supervised: label {labels[bad][0].item()} is outside "
                f"0..method.num_classes-1 = 0..{self.num_classes - 1}"
            )
        return F.one_hot(labels.clamp(0, self.num_classes - 1), self.num_classes).float()

    def partners(self, n: int, device) -> list[torch.Tensor]:
        return [torch.arange(n, device=device)] + [torch.randperm(n, device=device) for _ in range(self.k - 1)]

    def compose(self, x: torch.Tensor, target: torch.Tensor, perms: list[torch.Tensor]):
        """k-image training samples and their multi-hot targets."""
        return concat_width([x[p] for p in perms]), sum(target[p] for p in perms) / self.k

    def composed_view(self, view: torch.Tensor) -> tuple[str, torch.Tensor] | None:
        if self.k == 1:
            return None
        composed, _ = self.compose(view, torch.zeros(len(view), 1), self.partners(len(view), view.device))
        return f"view 1, k={self.k} concat", composed

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder()(x))

    def forward(self, batch: MethodBatch):
        labels = batch.labels
        labelled = is_labelled(batch.index, self.labeled_fraction) & (labels >= 0 if self.pi_weight else True)
        target = self.targets(labels, labelled)
        perms = self.partners(len(labels), labels.device)
        outs = []
        for x in batch.views[: self.n_views]:
            if self.cutmix_p > 0:
                x, target_v = cutmix(x, target, self.cutmix_p)
            else:
                target_v = target
            xk, tk = self.compose(x, target_v, perms)
            outs.append((self.classifier(self.backbone(xk)), tk))
        (logits, tk), keep = outs[0], torch.stack([labelled[p] for p in perms]).all(0)
        if self.pi_weight == 0:
            return soft_cross_entropy(logits, tk), {}
        ce = (-(tk * F.log_softmax(logits, 1)).sum(1) * keep).sum() / keep.sum().clamp(min=1)
        consistency = F.mse_loss(F.softmax(logits, 1), F.softmax(outs[1][0], 1))
        return ce + self.pi_weight * consistency, {"ce": ce.detach(), "consistency": consistency.detach()}


class SupervisedCE(ImCLR):
    """The cross-entropy baseline ImCLR, SupCon and TCL are compared against (ImCLR with k = 1)."""

    name = "supervised_ce"
    Config = ClassifierConfig

    @classmethod
    def needs_every_label(cls, method_cfg) -> bool:
        return True

    @staticmethod
    def concat_k(cfg) -> int:
        return 1
