"""Memory bank, online k-means and bank sampling (plain PyTorch + raycl.collectives collectives)."""

from raycl.bank.kmeans import OnlineKMeans, lloyd
from raycl.bank.memory import MemoryBank, Shard
from raycl.bank.sampling import (
    STRATEGIES,
    bank_logsumexp,
    inter_negatives,
    inter_positives,
    intra_negatives,
    sample_negatives,
)

__all__ = [
    "STRATEGIES",
    "MemoryBank",
    "OnlineKMeans",
    "Shard",
    "bank_logsumexp",
    "inter_negatives",
    "inter_positives",
    "intra_negatives",
    "lloyd",
    "sample_negatives",
]
