"""The effective rank (Roy & Vetterli 2007) of the held-out features: collapse shows without labels."""

from raycl.eval import effective_rank
from raycl.protocols.base import Protocol, Subject


class EffectiveRank(Protocol):
    name = "rank"
    summary = "effective rank of the held-out features (exp of the entropy of their singular values)"
    metrics = ("effective_rank",)

    def evaluate(self, subject: Subject) -> dict:
        return {"effective_rank": effective_rank(subject.features()[2])}
