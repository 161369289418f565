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

import copy
import dataclasses
import json
import os
from typing import Any

import yaml

import ray
from ray import tune
from raycl.config import SECTIONS, apply_overrides, from_dict
from raycl.errors import ConfigError

KINDS = ("grid", "choice", "uniform", "loguniform")


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


def _field_names(section: str) -> list[str]:
    import typing

    return list(typing.get_type_hints(SECTIONS[section].default_factory))


def parse_sweep(raw: Any, base: dict) -> SweepSpec:
    """Validate a ``sweep:`` section against the config it sweeps, before any trial starts."""
    if not isinstance(raw, dict):
        raise ConfigError("sweep: expected a mapping with a 'space' (see raycl/tune.py)")
    allowed = [f.name for f in dataclasses.fields(SweepSpec)]
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"sweep.{unknown[0]}: unknown key; allowed keys in 'sweep': {', '.join(allowed)}")
    spec = SweepSpec(**raw)
    if not isinstance(spec.space, dict) or not spec.space:
        raise ConfigError("sweep.space: empty; name at least one config key, e.g. optim.base_lr: {grid: [0.1, 0.3]}")
    for key, name, lo in (("num_samples", spec.num_samples, 1), ("max_concurrent", spec.max_concurrent, 1),
                          ("grace_period", spec.grace_period, 1), ("reduction_factor", spec.reduction_factor, 2)):
        if not isinstance(name, int) or isinstance(name, bool) or name < lo:
            raise ConfigError(f"sweep.{key}: must be an integer >= {lo}, got {name!r}")
    if spec.mode not in ("max", "min"):
        raise ConfigError(f"sweep.mode: expected 'max' or 'min', got {spec.mode!r}")
    for key, dist in spec.space.items():
        where = f"sweep.space.{key}"
        parts = key.split(".")
        if len(parts) != 2 or parts[0] not in SECTIONS or parts[1] not in _field_names(parts[0]):
            raise ConfigError(f"{where}: {key!r} is not a config key (section.key, e.g. optim.base_lr)")
        if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in KINDS:
            raise ConfigError(f"{where}: expected one of {{grid: [...]}}, {{choice: [...]}}, "
                              f"{{uniform: [low, high]}}, {{loguniform: [low, high]}}; got {dist!r}")
        kind, values = next(iter(dist.items()))
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.{kind}: expected a non-empty list, got {values!r}")
        if kind in ("uniform", "loguniform"):
            if len(values) != 2 or not all(isinstance(v, (int, float)) for v in values) or values[0] >= values[1]:
                raise ConfigError(f"{where}.{kind}: expected [low, high] with low < high, got {values!r}")
            if kind == "loguniform" and values[0] <= 0:
                raise ConfigError(f"{where}.loguniform: low must be > 0, got {values[0]!r}")
        for v in values:   # every value must make a valid config on its own
            from_dict(apply_overrides(base, [f"{key}={json.dumps(v)}"]))
    return spec


def load_sweep(path: str, overrides: list[str] | None = None) -> tuple[dict, SweepSpec]:
    import fsspec

    try:
        with fsspec.open(path, "r") as fh:
            raw = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist") from None
    if "sweep" not in raw:
        raise ConfigError(f"{path}: no 'sweep' section; add one with a 'space' (see raycl/tune.py)")
    sweep_raw = raw.pop("sweep")
    base = apply_overrides(raw, overrides or [])
    from_dict(copy.deepcopy(base))
    return base, parse_sweep(sweep_raw, base)


def _space(spec: SweepSpec) -> dict:
    out = {}
    for key, dist in spec.space.items():
        kind, values = next(iter(dist.items()))
        out[key] = {"grid": tune.grid_search, "choice": tune.choice,
                    "uniform": lambda v: tune.uniform(*v), "loguniform": lambda v: tune.loguniform(*v)}[kind](values)
    return out


def _overrides(trial_config: dict) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in sorted(trial_config.items())]


def _trial(trial_config: dict, base: dict, storage_path: str) -> None:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from raycl.train.worker import train_loop

    cfg = from_dict(apply_overrides(base, _overrides(trial_config)))
    d = cfg.distributed
    TorchTrainer(
        train_loop, train_loop_config=cfg.to_dict(),
        scaling_config=ScalingConfig(num_workers=d.workers, use_gpu=d.use_gpu,
                                     resources_per_worker={"CPU": d.cpus_per_worker}),
        run_config=RunConfig(name=f"trial-{tune.get_context().get_trial_id()}", storage_path=storage_path,
                             callbacks=[TuneReportCallback()]),
    ).fit()


def sweep(path: str, overrides: list[str] | None = None, address: str | None = None, resume: bool = True) -> dict:
    """Run the sweep; returns the results table and the path of the best config's YAML."""
    from ray.tune.schedulers import ASHAScheduler

    from raycl.train.trainer import init_ray, storage

    base, spec = load_sweep(path, overrides)
    cfg = from_dict(copy.deepcopy(base))
    st = storage(cfg)
    root = st["storage_path"]
    name = spec.name or f"{cfg.run.name}-sweep"
    owned = init_ray(address)
    try:
        trainable = tune.with_resources(tune.with_parameters(_trial, base=base, storage_path=root), {"CPU": 0.1})
        sweep_dir = os.path.join(root, name)
        if resume and tune.Tuner.can_restore(sweep_dir):
            print(f"[raycl] sweep {name!r} has state at {sweep_dir}: resuming (finished trials are kept)", flush=True)
            tuner = tune.Tuner.restore(sweep_dir, trainable, resume_errored=True)
        else:
            scheduler = ASHAScheduler(time_attr="training_iteration", max_t=cfg.run.epochs,
                                      grace_period=spec.grace_period, reduction_factor=spec.reduction_factor)
            tuner = tune.Tuner(
                trainable, param_space=_space(spec),
                tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, scheduler=scheduler,
                                            num_samples=spec.num_samples, max_concurrent_trials=spec.max_concurrent),
                run_config=tune.RunConfig(name=name, storage_path=root, verbose=1))
        grid = tuner.fit()
        rows = []
        for r in grid:
            df = r.metrics_dataframe
            values = df[spec.metric].dropna() if df is not None and spec.metric in df else []
            best = (max(values) if spec.mode == "max" else min(values)) if len(values) else None
            epochs = int(df["epoch"].max()) if df is not None and "epoch" in df else 0
            curve = ([[int(e), float(m)] for e, m in zip(df["epoch"], df[spec.metric]) if m == m]
                     if df is not None and "epoch" in df and spec.metric in df else [])
            rows.append({"trial": r.path.rstrip("/").split("/")[-1], "config": {k: r.config[k] for k in spec.space},
                         "curve": curve,
                         "best_" + spec.metric: best, "epochs": epochs,
                         "stopped_early": r.error is None and epochs < cfg.run.epochs,
                         "error": None if r.error is None else str(r.error).splitlines()[0]})
        best = grid.get_best_result(metric=spec.metric, mode=spec.mode, scope="all")
        best_raw = apply_overrides(base, _overrides({k: best.config[k] for k in spec.space}))
        best_raw.setdefault("run", {})["name"] = f"{name}-best"
        best_yaml = os.path.join(sweep_dir, "best_config.yaml")
        with open(best_yaml, "w") as fh:
            fh.write(from_dict(best_raw).to_yaml())
    finally:
        if owned:
            ray.shutdown()
    return {"sweep": name, "metric": spec.metric, "mode": spec.mode, "trials": rows, "best_config": best_yaml}


def format_table(result: dict) -> str:
    key = "best_" + result["metric"]
    lines = [f"{'trial':<24} {key:>14} {'epochs':>6} {'early':>5}  config"]
    for r in result["trials"]:
        val = "-" if r[key] is None else f"{r[key]:.4f}"
        lines.append(f"{r['trial'][:24]:<24} {val:>14} {r['epochs']:>6} {str(r['stopped_early']):>5}  "
                     f"{json.dumps(r['config'])}{'  ERROR ' + r['error'] if r['error'] else ''}")
    lines.append(f"best config: {result['best_config']}")
    return "\n".join(lines)
