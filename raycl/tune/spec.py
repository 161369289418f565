"""The ``sweep:`` section of a YAML file, parsed and checked against the config it sweeps before any
trial starts: every key a config key, every value (every grid combination) a valid config."""

from __future__ import annotations

import dataclasses
import itertools
import json
import types
import typing
from typing import Any

from raycl.config import SECTIONS, apply_overrides, from_dict, from_user, read_yaml, resolve_paths
from raycl.errors import ConfigError
from raycl.methods import REGISTRY, MethodConfig

KINDS = ("grid", "choice", "uniform", "loguniform")

UNIONS = (typing.Union, types.UnionType)


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
    "linear_eval_top1",
    "linear_eval_top5",
    "finetune_top1",
    "finetune_top5",
)  # the last four: the runs of raycl linear and raycl finetune
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
        raise ConfigError("sweep: expected a mapping with a 'space' (see docs/guides/sweeps.md)")
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
        raise ConfigError(f"{where}: no 'sweep' section; add one with a 'space' (see docs/guides/sweeps.md)")
    sweep_raw = holder.pop("sweep")
    if sweep_path is not None and holder:
        found = ", ".join(sorted(map(str, holder)))
        raise ConfigError(f"{sweep_path}: a sweep file beside a config holds a 'sweep:' section only; found {found}")
    base = resolve_paths(apply_overrides(raw, overrides or []))  # trials run in directories of their own
    from_user(base)  # the config swept, checked with its paths before its sweep section
    return base, parse_sweep(sweep_raw, base)


def _overrides(trial_config: dict) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in sorted(trial_config.items())]
