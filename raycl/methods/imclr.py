"""ImCLR: implicit contrastive learning for supervised training.

    for x, y in loader:                           # each image augmented on its own
        partners_j = permutations of the batch, j = 1..k-1
        x~ = concat_width(x, x[perm_1], ..., x[perm_{k-1}])
        y~ = (onehot(y) + onehot(y[perm_1]) + ...) / k          # multi-hot, sums to 1
        loss = cross_entropy(classifier(f(x~)), soft target y~)
    test time: the same image concatenated k times, one-hot label

k = 1 is plain one-hot cross-entropy: the supervised baseline (`supervised_ce`). Width concatenation
(not height) is the reading of Table 1's parameter deltas (VGG16 +262,144 from a doubled flatten).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from raycl.errors import DataError
from raycl.methods.base import Method, MethodBatch
from raycl.models import build_backbone


def concat_width(images: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(images, dim=3)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


class ImCLR(Method):
    name = "imclr"
    n_views = 1
    augmentation = "supervised"

    def __init__(self, cfg, channels: int):
        super().__init__()
        self.k, self.num_classes = self.concat_k(cfg), cfg.method.num_classes
        self.backbone = build_backbone(cfg.model, channels)
        self.classifier = torch.nn.Linear(self.backbone.out_dim, self.num_classes)

    @staticmethod
    def concat_k(cfg) -> int:
        return cfg.method.concat_k

    def compose(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k-image training samples and their multi-hot targets."""
        if bool((labels < 0).any()) or bool((labels >= self.num_classes).any()):
            bad = labels[(labels < 0) | (labels >= self.num_classes)][0].item()
            raise DataError(f"{self.name} is supervised: label {bad} is outside 0..method.num_classes-1 "
                            f"= 0..{self.num_classes - 1}")
        perms = [torch.arange(len(x), device=x.device)] + [torch.randperm(len(x), device=x.device)
                                                           for _ in range(self.k - 1)]
        xk = concat_width([x[p] for p in perms])
        target = sum(F.one_hot(labels[p], self.num_classes).float() for p in perms) / self.k
        return xk, target

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Test time: the same image concatenated k times."""
        return self.classifier(self.backbone(concat_width([x] * self.k)))

    def forward(self, batch: MethodBatch):
        xk, target = self.compose(batch.views[0], batch.labels)
        logits = self.classifier(self.backbone(xk))
        return soft_cross_entropy(logits, target), {}


class SupervisedCE(ImCLR):
    """The cross-entropy baseline ImCLR, SupCon and TCL are compared against (ImCLR with k = 1)."""

    name = "supervised_ce"

    @staticmethod
    def concat_k(cfg) -> int:
        return 1
