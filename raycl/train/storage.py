"""Where a run lives: its storage (local path, a URL pyarrow knows, or any fsspec URL), its run
directory and where its loggers write. Plain functions of the config: the driver and the workers both
ask (no Ray here)."""

from __future__ import annotations

import os

import fsspec
from pyarrow.fs import FSSpecHandler, PyFileSystem


def storage(cfg) -> dict:
    """RunConfig storage arguments: a local path, a URL pyarrow knows, or any other fsspec URL."""
    path = cfg.run.storage_path
    proto = path.split("://", 1)[0] if "://" in path else "file"
    if proto == "file":
        return {"storage_path": os.path.abspath(os.path.expanduser(path.removeprefix("file://")))}
    if proto in ("s3", "gs", "gcs", "hdfs", "abfs", "abfss"):
        return {"storage_path": path}

    fs, root = fsspec.core.url_to_fs(path)
    return {"storage_path": root, "storage_filesystem": PyFileSystem(FSSpecHandler(fs))}


def run_dir(cfg) -> str | None:
    st = storage(cfg)
    return (
        os.path.join(st["storage_path"], cfg.run.name)
        if "storage_filesystem" not in st and "://" not in st["storage_path"]
        else None
    )


def log_dir(cfg) -> str:
    """Where the loggers write: run.log_dir, else the run directory when storage is local, else
    ~/raycl_logs/<run> on rank 0's node (TensorBoard reads local folders)."""
    if cfg.run.log_dir:
        return os.path.abspath(os.path.expanduser(cfg.run.log_dir))
    return run_dir(cfg) or os.path.join(os.path.expanduser("~/raycl_logs"), cfg.run.name)
