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
import dataclasses
import itertools
import json
import os
import types
import typing
from typing import Any

import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler

from raycl.config import SECTIONS, Config, apply_overrides, from_dict, from_user, read_yaml, resolve_paths
from raycl.data import build_sources, check_data, eval_ready
from raycl.errors import ConfigError, RayclError
from raycl.files import write_atomic
from raycl.log import get as get_logger
from raycl.methods import REGISTRY, MethodConfig
from raycl.train import launch
from raycl.train.console import attached, quiet_trial_errors, verbose
from raycl.train.engine import env_set
from raycl.train.launch import raycl_error
from raycl.train.storage import storage
from raycl.train.trainer import init_ray, start_bank_server, worker_slots
from raycl.train.worker import train_loop

KINDS = ("grid", "choice", "uniform", "loguniform")

UNIONS = (typing.Union, types.UnionType)

log = get_logger(__name__)


@dataclasses.dataclass
class SweepSpec:
    space: dict[str, dict]
    name: str | None = None
    metric: str = "knn_top1"
    mode: str = "max"
    num_samples: int = 1
    max_concurrent: int = 2
    grace_period: int = 1
    reduction_factor: int = 2


def _section_model(section: str, base: dict):
    """The model of ``section`` in the swept config (``method``: the model of the method it names)."""
    if section != "method":
        return SECTIONS[section]
    name = (base.get("method") or {}).get("name", MethodConfig.model_fields["name"].default)
    return REGISTRY[name].Config if name in REGISTRY else MethodConfig


# What every epoch reports (raycl/train/worker.py); method/* and bank/* depend on the method.
METRICS = (
    "loss",
    "lr",
    "images_per_s",
    "epoch_time_s",
    "corrupt_skipped",
    "knn_top1",
    "epoch",
    "global_step",
    "linear_top1",
    "linear_top5",
)  # the last two: linear_eval runs (raycl linear)
MAX_GRID_POINTS = 4096  # grid x choice combinations checked one by one before the first trial


def _field_type(key: str, base: dict):
    section, name = key.split(".")
    tp = _section_model(section, base).model_fields[name].annotation
    inner = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) in UNIONS else [tp]
    return inner[0]


def _check_combinations(spec: SweepSpec, base: dict) -> None:
    """Every combination of grid and choice values must make a valid config (e.g. batch size
    divisible by workers x accumulation); random ranges are checked at both ends."""

    discrete = {k: next(iter(d.values())) for k, d in spec.space.items() if next(iter(d)) in ("grid", "choice")}
    keys = sorted(discrete)
    n = 1
    for k in keys:
        n *= len(discrete[k])
    if n > MAX_GRID_POINTS:
        raise ConfigError(
            f"sweep.space: {n} grid/choice combinations; at most {MAX_GRID_POINTS} are checked and run, split the sweep"
        )
    ranges = {k: next(iter(d.values())) for k, d in spec.space.items() if k not in discrete}
    for combo in itertools.product(*(discrete[k] for k in keys)):
        for ends in itertools.product(*(ranges[k] for k in sorted(ranges))):
            point = dict(zip(keys, combo)) | dict(zip(sorted(ranges), ends))
            try:
                from_dict(apply_overrides(base, _overrides(point)))
            except ConfigError as e:
                raise ConfigError(f"sweep.space: the trial {json.dumps(point)} is not a valid config: {e}") from None


def _check_dimension(key: str, dist: Any, base: dict) -> None:
    """One ``sweep.space`` entry: a config key of the swept config, a known kind, values it takes."""
    where = f"sweep.space.{key}"
    parts = key.split(".")
    if len(parts) != 2 or parts[0] not in SECTIONS or parts[1] not in _section_model(parts[0], base).model_fields:
        raise ConfigError(f"{where}: {key!r} is not a config key (section.key, e.g. optim.base_lr)")
    if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in KINDS:
        raise ConfigError(
            f"{where}: expected one of {{grid: [...]}}, {{choice: [...]}}, "
            f"{{uniform: [low, high]}}, {{loguniform: [low, high]}}; got {dist!r}"
        )
    kind, values = next(iter(dist.items()))
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}.{kind}: expected a non-empty list, got {values!r}")
    if kind in ("uniform", "loguniform"):
        if _field_type(key, base) is not float:
            raise ConfigError(
                f"{where}.{kind}: {key} is not a real-valued field (it takes "
                f"{_field_type(key, base).__name__} values); use grid or choice"
            )
        if (
            len(values) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            or values[0] >= values[1]
        ):
            raise ConfigError(f"{where}.{kind}: expected [low, high] with low < high, got {values!r}")
        if kind == "loguniform" and values[0] <= 0:
            raise ConfigError(f"{where}.loguniform: low must be > 0, got {values[0]!r}")
    for v in values:  # every value must make a valid config on its own
        try:
            from_dict(apply_overrides(base, [f"{key}={json.dumps(v)}"]))
        except ConfigError as e:
            raise ConfigError(f"{where}: value {v!r}: {e}") from None


def parse_sweep(raw: Any, base: dict) -> SweepSpec:
    """Validate a ``sweep:`` section against the config it sweeps, before any trial starts."""
    if not isinstance(raw, dict):
        raise ConfigError("sweep: expected a mapping with a 'space' (see raycl/tune.py)")
    allowed = [f.name for f in dataclasses.fields(SweepSpec)]
    unknown = sorted(set(raw) - set(allowed), key=str)
    if unknown:
        raise ConfigError(f"sweep.{unknown[0]}: unknown key; allowed keys in 'sweep': {', '.join(allowed)}")
    spec = SweepSpec(**raw)
    if not isinstance(spec.metric, str) or not (spec.metric in METRICS or spec.metric.startswith(("method/", "bank/"))):
        raise ConfigError(
            f"sweep.metric: {spec.metric!r} is not reported by any epoch; one of {', '.join(METRICS)}, "
            "or a method/... or bank/... metric of the method"
        )
    if spec.name is not None and (not isinstance(spec.name, str) or not spec.name or "/" in spec.name):
        raise ConfigError(f"sweep.name: expected a non-empty name without '/', got {spec.name!r}")
    if not isinstance(spec.space, dict) or not spec.space:
        raise ConfigError("sweep.space: empty; name at least one config key, e.g. optim.base_lr: {grid: [0.1, 0.3]}")
    for key, name, lo in (
        ("num_samples", spec.num_samples, 1),
        ("max_concurrent", spec.max_concurrent, 1),
        ("grace_period", spec.grace_period, 1),
        ("reduction_factor", spec.reduction_factor, 2),
    ):
        if not isinstance(name, int) or isinstance(name, bool) or name < lo:
            raise ConfigError(f"sweep.{key}: must be an integer >= {lo}, got {name!r}")
    if spec.mode not in ("max", "min"):
        raise ConfigError(f"sweep.mode: expected 'max' or 'min', got {spec.mode!r}")
    for key, dist in spec.space.items():
        _check_dimension(key, dist, base)
    _check_combinations(spec, base)
    return spec


def load_sweep(path: str, overrides: list[str] | None = None, sweep_path: str | None = None) -> tuple[dict, SweepSpec]:
    """The config of ``path`` (with ``overrides``) and the ``sweep:`` section of ``sweep_path``, or
    of ``path`` itself when there is none (one file holding both)."""
    raw = read_yaml(path, "sweep file" if sweep_path is None else "config")
    holder = raw if sweep_path is None else read_yaml(sweep_path, "sweep file")
    if "sweep" not in holder:
        where = sweep_path or path
        raise ConfigError(f"{where}: no 'sweep' section; add one with a 'space' (see raycl/tune.py)")
    sweep_raw = holder.pop("sweep")
    if sweep_path is not None and holder:
        found = ", ".join(sorted(map(str, holder)))
        raise ConfigError(f"{sweep_path}: a sweep file beside a config holds a 'sweep:' section only; found {found}")
    base = resolve_paths(apply_overrides(raw, overrides or []))  # trials run in directories of their own
    from_user(base)  # the config swept, checked with its paths before its sweep section
    return base, parse_sweep(sweep_raw, base)


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


def _overrides(trial_config: dict) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in sorted(trial_config.items())]


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
