"""The kNN monitor (Wu et al. 2018, the protocol of InstDisc, MoCo and DINO): a weighted vote of the k
nearest training features (cosine, temperature T) for each held-out row's label; no training."""

from raycl.eval import knn_top1
from raycl.protocols.base import Protocol, Subject


class KNNMonitor(Protocol):
    name = "knn"
    summary = "weighted kNN (cosine, k = eval.knn_k, T = eval.knn_temperature) on a sample of frozen features"
    metrics = ("knn_top1",)

    def evaluate(self, subject: Subject) -> dict:
        tr, tr_y, te, te_y = subject.features()
        e = subject.cfg.eval
        return {"knn_top1": knn_top1(tr, tr_y, te, te_y, e.knn_k, e.knn_temperature)}
