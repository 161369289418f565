"""Hyper-parameter sweeps with Ray Tune: the search space is a ``sweep:`` section of the YAML.

    sweep:
      name: lr-temp              # default: <run.name>-sweep
      metric: knn_top1           # reported every epoch
      mode: max
      num_samples: 1             # repeats of the grid (random draws for choice/uniform/loguniform)
      max_concurrent: 2
      grace_period: 1            # ASHA: epochs before a trial can be stopped
      reduction_factor: 2
      space:
        optim.base_lr: {loguniform: [0.01, 1.0]}
        method.temperature: {choice: [0.1, 0.2, 0.5]}
        model.width: {grid: [8, 16]}

Ray 2.60 runs Train V2: each trial is a function that fits a TorchTrainer whose reports reach Tune
through ``TuneReportCallback``; ASHA stops trials whose metric lags at its rungs (epochs).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os

import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler

from raycl.config import Config, apply_overrides, from_dict
from raycl.data import build_sources, check_data, eval_ready
from raycl.errors import ConfigError, RayclError
from raycl.files import write_atomic
from raycl.log import get as get_logger
from raycl.train import launch
from raycl.train.console import attached, quiet_trial_errors, verbose
from raycl.train.engine import env_set
from raycl.train.launch import raycl_error
from raycl.train.storage import storage
from raycl.train.trainer import init_ray, start_bank_server, worker_slots
from raycl.train.worker import train_loop
from raycl.tune.spec import METRICS, SweepSpec, _overrides, load_sweep, parse_sweep

__all__ = ["METRICS", "SweepSpec", "format_table", "load_sweep", "parse_sweep", "sweep", "sweep_config"]

log = get_logger(__name__)


def check_sweep_data(cfg: Config, spec: SweepSpec) -> None:
    """The data every trial reads is checked once; a sweep on knn_top1 needs labeled rows."""
    check_data(cfg)
    if spec.metric == "knn_top1":
        why = eval_ready(*build_sources(cfg))
        if why:
            raise ConfigError(
                f"sweep.metric: knn_top1 cannot be measured: {why.split(':')[0]}; optimise "
                "another metric (e.g. loss with mode: min) or add labeled rows"
            )


def check_trials_fit(base: dict, spec: SweepSpec) -> None:
    """Every trial's worker group (workers x cpus_per_worker, each worker on one node) must fit the
    cluster, or Train would wait for it forever."""

    keys = [k for k in spec.space if k.startswith("distributed.") and next(iter(spec.space[k])) in ("grid", "choice")]
    for combo in itertools.product(*(next(iter(spec.space[k].values())) for k in keys)):
        d = from_dict(apply_overrides(base, _overrides(dict(zip(keys, combo))))).distributed
        slots, nodes = worker_slots(d.cpus_per_worker)
        if slots < d.workers:
            raise ConfigError(
                f"distributed.workers: a trial needs {d.workers} workers x {d.cpus_per_worker:g} CPUs "
                f"(one node each), the Ray cluster's nodes have {', '.join(f'{c:g}' for c in nodes)} "
                f"CPUs ({slots} such workers fit); lower distributed.workers or cpus_per_worker"
            )


def _space(spec: SweepSpec) -> dict:
    out = {}
    for key, dist in spec.space.items():
        kind, values = next(iter(dist.items()))
        out[key] = {
            "grid": tune.grid_search,
            "choice": tune.choice,
            "uniform": lambda v: tune.uniform(*v),
            "loguniform": lambda v: tune.loguniform(*v),
        }[kind](values)
    return out


def error_line(error: BaseException) -> str:
    err = raycl_error(error)
    return " ".join(str(err).split()) if err is not None else str(error).splitlines()[0]


def no_trial_finished(grid, metric: str) -> RayclError:
    """Every trial failed before reporting ``metric``: the first raycl error among them (the same bad
    data or config usually stops them all), else one line naming the first failure."""
    errors = [grid[i].error for i in range(len(grid)) if grid[i].error is not None]
    for error in errors:
        err = raycl_error(error)
        if err is not None:
            return err
    first = error_line(errors[0]) if errors else "none of them reported it"
    return RayclError(f"sweep: no trial reported {metric}; first failure: {first}")


def _trial(trial_config: dict, base: dict) -> None:
    """One trial: the swept config with this trial's values, launched as a plain run of it would be
    (same storage, checkpoints, restarts and BankServer), reporting each epoch to Tune."""
    trial = f"trial-{tune.get_context().get_trial_id()}"
    # each trial its own run name: its own run directory, logged run (run.log_dir) and BankServer
    cfg = from_dict(apply_overrides(base, _overrides(trial_config) + [f"run.name={trial}"]))
    start_bank_server(cfg)
    # Tune records the raycl error a worker raised (launch.fit unwraps it): one line in the sweep's table
    launch.fit(launch.for_run(cfg, train_loop, callbacks=[TuneReportCallback()]))


def sweep(
    path: str,
    overrides: list[str] | None = None,
    address: str | None = None,
    resume: bool = True,
    num_cpus: int | None = None,
) -> dict:
    """Run the sweep; returns the results table and the path of the best config's YAML."""

    base, spec = load_sweep(path, overrides)
    return sweep_config(base, spec, address, resume, num_cpus)


def sweep_config(
    base: dict, spec: SweepSpec, address: str | None = None, resume: bool = True, num_cpus: int | None = None
) -> dict:
    """``sweep`` of a config already read (absolute paths) and its parsed ``sweep:`` section."""

    cfg = from_dict(base)
    check_sweep_data(cfg, spec)
    st = storage(cfg)
    root = st["storage_path"]
    name = spec.name or f"{cfg.run.name}-sweep"
    owned = init_ray(address, num_cpus)
    try:
        check_trials_fit(base, spec)
        # The trial's own actor only waits on its TorchTrainer: it takes no CPU, so a cluster that
        # fits one worker group runs the sweep (with 0.1 CPU, 2 x 1-CPU workers never fit 2 CPUs).
        # Tune refuses a bundle with no resource at all: one byte of memory stands in.
        trainable = tune.with_resources(tune.with_parameters(_trial, base=base), {"CPU": 0, "memory": 1})
        sweep_dir = os.path.join(root, name)
        tuner = _tuner(trainable, spec, name, root, cfg.run.epochs, resume)

        dumps = os.path.join(sweep_dir, "worker_output.log")  # what the console keeps out of sight
        with (
            attached(progress=False, failure_log=dumps, failure_scope="process"),
            quiet_trial_errors(),
            metric_on_eval_epochs_only(cfg, spec),
        ):
            # Tune's table shows the trials; each trial's own lines still show
            grid = tuner.fit()
        rows = [_trial_row(grid[i], spec, cfg.run.epochs) for i in range(len(grid))]
        if not any(row["best_" + spec.metric] is not None for row in rows):
            raise no_trial_finished(grid, spec.metric)
        best = grid.get_best_result(metric=spec.metric, mode=spec.mode, scope="all")
        best_yaml = _write_best_config(base, spec, best.config or {}, name, sweep_dir)
    finally:
        if owned:
            ray.shutdown()
    return {"sweep": name, "metric": spec.metric, "mode": spec.mode, "trials": rows, "best_config": best_yaml}


def metric_on_eval_epochs_only(cfg: Config, spec: SweepSpec) -> contextlib.AbstractContextManager:
    """With ``eval.every_epochs`` > 1 the kNN metric is in the evaluated epochs' results only; Tune
    stops the whole sweep at the first result without it unless told not to (ASHA skips such
    results: its rungs count the evaluated epochs alone). A value the user set is left alone."""
    key = "TUNE_DISABLE_STRICT_METRIC_CHECKING"  # read by Tune's controller, in this process, at each result
    if spec.metric != "knn_top1" or cfg.eval.every_epochs <= 1 or key in os.environ:
        return contextlib.nullcontext()
    return env_set(key, "1")


def _tuner(trainable, spec: SweepSpec, name: str, root: str, epochs: int, resume: bool):
    """A new Tuner with ASHA over ``spec``, or the interrupted one at ``root/name`` (``resume``)."""

    sweep_dir = os.path.join(root, name)
    if resume and tune.Tuner.can_restore(sweep_dir):
        log.info(f"sweep {name!r} has state at {sweep_dir}: resuming (finished trials are kept)")
        return tune.Tuner.restore(sweep_dir, trainable, resume_errored=True)
    scheduler = ASHAScheduler(
        time_attr="training_iteration", max_t=epochs, grace_period=spec.grace_period,
        reduction_factor=spec.reduction_factor,
    )  # fmt: skip
    return tune.Tuner(
        trainable,
        param_space=_space(spec),
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            scheduler=scheduler,
            num_samples=spec.num_samples,
            max_concurrent_trials=spec.max_concurrent,
        ),  # fmt: skip
        # Tune's own status table (every 30 s) only with --verbose; raycl says when trials start and end.
        run_config=tune.RunConfig(
            name=name, storage_path=root, verbose=1 if verbose() else 0, callbacks=[TrialLines(spec)]
        ),
    )


class TrialLines(tune.Callback):
    """A raycl line as each trial starts and as it ends, naming its values and its best metric."""

    def __init__(self, spec: SweepSpec):
        self.spec = spec

    def on_trial_start(self, iteration, trials, trial, **info):
        log.info(f"sweep: trial {trial.trial_id} started with {self.values(trial)}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        best = trial.metric_analysis.get(self.spec.metric, {}).get(self.spec.mode)
        shown = f"best {self.spec.metric} {best:.4f}" if best is not None else f"no {self.spec.metric} reported"
        epochs = (trial.last_result or {}).get("epoch", 0)
        log.info(f"sweep: trial {trial.trial_id} ({self.values(trial)}) ended after {epochs} epochs: {shown}")

    def on_trial_error(self, iteration, trials, trial, **info):
        log.info(f"sweep: trial {trial.trial_id} ({self.values(trial)}) failed: its error is in the table at the end")

    def values(self, trial) -> str:
        return ", ".join(f"{key}={trial.config.get(key)}" for key in self.spec.space)


def _trial_row(result, spec: SweepSpec, epochs: int) -> dict:
    """One line of the results table: the trial's values, its metric curve and best, how it ended."""
    df, metric = result.metrics_dataframe, spec.metric
    values = df[metric].dropna() if df is not None and metric in df else []
    best = (max(values) if spec.mode == "max" else min(values)) if len(values) else None
    ran = int(df["epoch"].max()) if df is not None and "epoch" in df else 0
    has_curve = df is not None and "epoch" in df and metric in df
    curve = [[int(e), float(m)] for e, m in zip(df["epoch"], df[metric]) if m == m] if has_curve else []
    return {
        "trial": result.path.rstrip("/").split("/")[-1],
        "config": {k: (result.config or {})[k] for k in spec.space},
        "curve": curve,
        "best_" + metric: best,
        "epochs": ran,
        "stopped_early": result.error is None and ran < epochs,
        "error": None if result.error is None else error_line(result.error),
    }


def _write_best_config(base: dict, spec: SweepSpec, best: dict, name: str, sweep_dir: str) -> str:
    best_raw = apply_overrides(base, _overrides({k: best[k] for k in spec.space}))
    best_raw.setdefault("run", {})["name"] = f"{name}-best"
    best_yaml = os.path.join(sweep_dir, "best_config.yaml")
    write_atomic(best_yaml, from_dict(best_raw).to_yaml())
    return best_yaml


def format_table(result: dict) -> str:
    key = "best_" + result["metric"]
    lines = [f"{'trial':<24} {key:>14} {'epochs':>6} {'early':>5}  config"]
    for r in result["trials"]:
        val = "-" if r[key] is None else f"{r[key]:.4f}"
        lines.append(
            f"{r['trial'][:24]:<24} {val:>14} {r['epochs']:>6} {str(r['stopped_early']):>5}  "
            f"{json.dumps(r['config'])}{'  ERROR ' + r['error'] if r['error'] else ''}"
        )
    lines.append(f"best config: {result['best_config']}")
    return "\n".join(lines)
