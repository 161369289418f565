"""Forward passes that normalise with each batch's own statistics and change nothing."""

from __future__ import annotations

import contextlib
import types

import torch.nn as nn
import torch.nn.functional as F


def _local_batch_norm(self, x):
    return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


@contextlib.contextmanager
def batch_statistics(model: nn.Module):
    """Inside, every BatchNorm (plain, SyncBatchNorm or raycl's GlobalBatchNorm) normalises with the
    statistics of the batch it sees on this worker: what the network computes in training, without
    updating running statistics and without collectives (workers may forward different numbers of
    batches). Freshly built networks have running statistics of 0 / 1, so eval mode would give
    features unlike any the network produces in training."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.forward = types.MethodType(_local_batch_norm, m)  # type: ignore[method-assign]  # undone below
    try:
        yield model
    finally:
        for m in bns:
            del m.forward
