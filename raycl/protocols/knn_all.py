"""The kNN classifier over every training row, not a sample: features split across Ray Train workers,
each holding only its share (raycl.train.knn_run), the k-lists gathered and merged."""

from __future__ import annotations

from raycl.errors import ConfigError
from raycl.protocols.base import Protocol, Subject


class KNNAllRows(Protocol):
    name = "knn_all"
    summary = "weighted kNN over every training row, the features split across Ray Train workers (--workers)"
    metrics = (
        "knn_all_top1",
        "knn_all_top5",
        "knn_all_train_rows",
        "knn_all_queries",
        "knn_all_k",
        "knn_all_temperature",
        "knn_all_classes",
        "knn_all_workers",
    )
    frozen = False
    options = ("workers", "k", "temperature", "address")

    def evaluate(self, subject: Subject) -> dict:
        o = subject.options
        workers = 2 if o.get("workers") is None else o["workers"]
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"--workers: expected an integer >= 1, got {workers!r}")
        from raycl.train.knn_run import knn  # imports Ray: only once the input is known to be good

        start = subject.trained_from(self.name)
        return knn(start, workers, o.get("k"), o.get("temperature"), address=o.get("address"))
