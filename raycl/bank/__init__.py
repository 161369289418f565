"""Memory bank, online k-means and bank sampling (plain PyTorch)."""
from raycl.bank.kmeans import OnlineKMeans, lloyd
from raycl.bank.memory import MemoryBank
from raycl.bank.sampling import STRATEGIES, sample_negatives, sample_positives

__all__ = ["STRATEGIES", "MemoryBank", "OnlineKMeans", "lloyd", "sample_negatives", "sample_positives"]
