"""Evaluation: kNN monitor and linear probe (plain PyTorch)."""

from raycl.eval.features import extract
from raycl.eval.knn import knn_predict, knn_top1
from raycl.eval.labels import unlabeled_reason
from raycl.eval.linear import linear_probe
from raycl.eval.rank import effective_rank

__all__ = ["effective_rank", "extract", "knn_predict", "knn_top1", "linear_probe", "unlabeled_reason"]
