"""An evaluation protocol from outside raycl: each held-out row takes the label of the nearest class
centroid of the L2-normalised training features (cosine). A frozen protocol: raycl extracts the
features once for it and any other frozen protocol asked for, and runs it on both floors too."""

import torch
import torch.nn.functional as F

from raycl.protocols import Protocol, Subject


class NearestCentroid(Protocol):
    name = "toy_centroid"
    summary = "nearest class centroid of the normalised training features (cosine)"
    metrics = ("toy_centroid_top1",)

    def evaluate(self, subject: Subject) -> dict:
        train, train_labels, test, test_labels = subject.features()
        keep, held = train_labels >= 0, test_labels >= 0  # unlabeled rows (-1) take no part
        train, train_labels = F.normalize(train[keep], dim=1), train_labels[keep]
        classes = int(train_labels.max()) + 1
        centroids = torch.zeros(classes, train.shape[1]).index_add_(0, train_labels, train)
        guess = (F.normalize(test[held], dim=1) @ F.normalize(centroids, dim=1).T).argmax(1)
        return {"toy_centroid_top1": (guess == test_labels[held]).float().mean().item()}
