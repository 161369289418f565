"""raycl: distributed large-batch self-supervised learning on Ray Train and DeepSpeed."""

__version__ = "0.2.0"
