"""raycl: distributed large-batch contrastive learning on Ray + DeepSpeed."""

__version__ = "0.1.0"
