"""The suite's smallest training config (the ``tiny_cfg`` fixture, and module-scoped runs)."""


def tiny_config(storage, *overrides):
    """A config that trains in seconds: 256 demo digits, a width-8 ResNet-18, 2 workers."""
    from raycl.config import load_config

    base = ["data.num_samples=256", "data.batch_size=64", "model.width=8", "model.proj_hidden_dim=32",
            "model.proj_out_dim=16", "run.epochs=2", "run.storage_path=" + str(storage),
            "run.log_every=2", "eval.knn_k=20", "eval.linear_epochs=2", "distributed.torch_threads=1",
            "optim.warmup_epochs=0"]
    return load_config(None, base + list(overrides))
