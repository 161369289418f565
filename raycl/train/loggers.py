"""Curves a person can open: TensorBoard event files, an MLflow run, a Weights & Biases run.

Rank 0 logs per-step scalars (``step/loss``, ``step/lr``, ``step/images_per_s``, every
``run.log_every`` steps) and every epoch's metrics (loss, lr, knn_top1, images_per_s, data/*,
method/*, bank/*) against the global step. A resumed run appends to the same curves: TensorBoard
purges events past the resumed step, MLflow and wandb continue the run whose id the first start
wrote beside the logs. Nothing here needs a network: MLflow writes a local SQLite store unless
$MLFLOW_TRACKING_URI names a server, wandb runs offline unless $WANDB_MODE says otherwise.
"""

from __future__ import annotations

import importlib.util
import math
import os
import secrets
import time
import warnings
from typing import Protocol

from raycl.errors import ConfigError
from raycl.files import write_atomic

PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
INSTALL = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def check_names(names: list[str]) -> None:
    """At config load: every logger name is one raycl knows (its package may live only on the workers)."""
    for name in names:
        if name not in PACKAGES:
            raise ConfigError(f"run.loggers: unknown logger {name!r}; available: {', '.join(PACKAGES)}")


def check(names: list[str]) -> None:
    """Before a run starts: every logger is known and its package importable (one ConfigError)."""
    check_names(names)
    for name in names:
        if importlib.util.find_spec(PACKAGES[name]) is None:
            raise ConfigError(
                f"run.loggers: {name} needs the {PACKAGES[name]!r} package, which is not installed "
                f"(pip install {INSTALL[name]}), or leave {name} out of run.loggers"
            )
        local_store = (
            ["sqlalchemy", "alembic"] if name == "mlflow" and not os.environ.get("MLFLOW_TRACKING_URI") else []
        )
        missing = [m for m in local_store if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(
                f"run.loggers: mlflow's local store (SQLite in the run directory) needs {' and '.join(missing)} "
                f"(pip install mlflow, or mlflow-skinny {' '.join(missing)}), or set MLFLOW_TRACKING_URI to a server"
            )


def scalars(metrics: dict) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    }


def flat(config: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)
    return out


def _run_id(path: str, resume: bool, new) -> str:
    """The id this run's logger used before (a resumed run continues it), else a new one, kept."""
    if resume and os.path.exists(path):
        with open(path) as f:
            return f.read().strip()
    run_id = new()
    write_atomic(path, run_id)
    return run_id


class TensorBoard:
    def __init__(self, log_dir: str, run_name: str, config: dict, resumed_step: int | None):
        from torch.utils.tensorboard import SummaryWriter  # each logger's package only where it logs

        self.dir = os.path.join(log_dir, "tensorboard")
        # purge_step: a run that restarts from a checkpoint at step S replaces what it logged after S
        self.w = SummaryWriter(self.dir, purge_step=None if resumed_step is None else resumed_step + 1)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.w.add_scalar(k, v, step)
        self.w.flush()

    def close(self) -> None:
        self.w.close()


class MLflow:
    def __init__(self, log_dir: str, run_name: str, config: dict, resumed_step: int | None):
        warnings.filterwarnings("ignore", message=r"The ``noload`` loader strategy is deprecated")  # MLflow's
        from mlflow import MlflowClient  # optional package (pip install raycl[mlflow])

        # MLflow 3 refuses new file stores ("maintenance mode"); its local store is SQLite
        uri = os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///" + os.path.abspath(
            os.path.join(log_dir, "mlflow.db")
        )
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "raycl")
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(name)

        def new() -> str:
            run = self.client.create_run(exp_id, run_name=run_name)
            for k, v in flat(config).items():
                self.client.log_param(run.info.run_id, k, v[:6000])
            return run.info.run_id

        self.run_id = _run_id(os.path.join(log_dir, "mlflow_run_id"), resumed_step is not None, new)

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric  # optional package

        ts = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, ts, step) for k, v in metrics.items()])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class WandB:
    def __init__(self, log_dir: str, run_name: str, config: dict, resumed_step: int | None):
        import wandb  # optional package (pip install raycl[wandb])

        run_id = _run_id(os.path.join(log_dir, "wandb_run_id"), resumed_step is not None, lambda: secrets.token_hex(4))
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "raycl"),
            name=run_name,
            id=run_id,
            resume="allow",
            dir=log_dir,
            config=config,
            mode=os.environ.get("WANDB_MODE", "offline"),  # type: ignore[arg-type]
            settings=wandb.Settings(silent=True, console="off"),
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


class Logger(Protocol):
    def __init__(self, log_dir: str, run_name: str, config: dict, resumed_step: int | None): ...
    def log(self, metrics: dict[str, float], step: int) -> None: ...
    def close(self) -> None: ...


KINDS: dict[str, type[Logger]] = {"tensorboard": TensorBoard, "mlflow": MLflow, "wandb": WandB}


class Loggers:
    """Every configured logger, written to together."""

    def __init__(self, names: list[str], log_dir: str, run_name: str, config: dict, resumed_step: int | None):
        check(names)
        os.makedirs(log_dir, exist_ok=True)
        self.log_dir = log_dir
        self.loggers = [KINDS[n](log_dir, run_name, config, resumed_step) for n in names]

    def log(self, metrics: dict, step: int) -> None:
        values = scalars(metrics)
        for lg in self.loggers:
            lg.log(values, step)

    def close(self) -> None:
        for lg in self.loggers:
            lg.close()
