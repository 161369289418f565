"""How one global batch is split over a number of workers: the one place raycl decides whether a
batch divides, read by the config's checks, the loader and the DeepSpeed engine alike, and made
again when an elastic run changes its worker count."""

from __future__ import annotations

from dataclasses import dataclass

from raycl.errors import ConfigError


@dataclass(frozen=True)
class WorldPlan:
    """``batch`` samples per optimizer step over ``workers`` workers, each feeding its share through
    the model in ``grad_accum`` equal micro-batches.

    ``grad_accum`` stays fixed across worker counts, so every forward pass sees batch / grad_accum
    samples over all workers (a contrastive loss draws its negatives from one forward: more
    micro-batches at a lower count would shrink them and change the objective); fewer workers hold
    larger micro-batches."""

    batch: int
    workers: int
    grad_accum: int = 1

    def __post_init__(self) -> None:
        if not self.fits(self.batch, self.workers, self.grad_accum):
            raise ConfigError(
                f"data.batch_size: {self.batch} is not divisible by distributed.workers x distributed.grad_accum"
                f" = {self.workers} x {self.grad_accum} = {self.workers * self.grad_accum}"
            )

    @staticmethod
    def fits(batch: int, workers: int, grad_accum: int = 1) -> bool:
        return workers >= 1 and grad_accum >= 1 and batch % (workers * grad_accum) == 0

    @property
    def per_worker(self) -> int:
        """Samples each worker contributes to one optimizer step."""
        return self.batch // self.workers

    @property
    def micro_batch(self) -> int:
        """Samples one worker feeds through the model per forward pass."""
        return self.per_worker // self.grad_accum
