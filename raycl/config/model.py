"""The whole config: ``Config`` (its seven sections, the ``method`` one the model of the method it
names), built by ``from_dict``, the one validation, and checked across sections by ``check_across``.
``from_user`` is the driver's door: validated, paths resolved and found, once."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SerializeAsAny, create_model

from raycl.config import plugins
from raycl.config.overrides import apply_overrides
from raycl.config.paths import check_paths, resolved
from raycl.config.sections import (
    DataConfig,
    DistributedConfig,
    EvalConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
)
from raycl.errors import ConfigError
from raycl.fields import Section, build
from raycl.world import WorldPlan


class Config(BaseModel):
    """A whole config file. Built by ``from_dict`` (each section validated on its own, the method's
    by the method's model) and checked across sections by ``check_across``. Frozen: the driver
    validates it once (``load_config``, ``from_user``) and workers and trials receive the object."""

    model_config = ConfigDict(frozen=True)
    _checked: bool = PrivateAttr(False)  # built by from_user: validated, paths resolved and found

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    method: SerializeAsAny[MethodConfig] = MethodConfig()
    optim: OptimConfig = OptimConfig()
    distributed: DistributedConfig = DistributedConfig()
    eval: EvalConfig = EvalConfig()
    run: RunConfig = RunConfig()

    def worker_counts(self) -> range:
        """The worker counts this run may train with (one for a fixed run)."""
        d = self.distributed
        return range(d.min_workers or d.workers, d.workers + 1)

    def plan(self, world: int | None = None) -> WorldPlan:
        """How ``world`` workers (default: distributed.workers) split this run's global batch: the
        same batch, schedule and ``grad_accum`` at every count (``raycl.world``); refused with the
        counts that can when ``world`` cannot."""
        world = self.distributed.workers if world is None else world
        if world not in self.worker_counts() or not keeps_batch(self, world):
            raise ConfigError(
                f"distributed.workers: this run cannot train on {world} workers "
                f"(allowed: {', '.join(map(str, _fitting_counts(self)))})"
            )
        return WorldPlan(self.data.batch_size, world, self.distributed.grad_accum)

    def replace(self, section: str, **values) -> Config:
        """This config with ``values`` in ``section``, for values raycl derived from a valid config
        (a worker count it checked); a user's change goes through ``with_overrides``."""
        part = getattr(self, section).model_copy(update=values)
        return self.model_copy(update={section: part})

    def with_overrides(self, *overrides: str) -> Config:
        """A new config: this one with ``section.key=value`` overrides, validated as a whole."""
        return from_user(apply_overrides(self.to_dict(), list(overrides)))

    @property
    def micro_batch(self) -> int:
        """Samples one worker feeds through the model per forward pass, at distributed.workers."""
        return self.plan().micro_batch

    @property
    def lr(self) -> float:
        """Peak lr after the linear scaling rule (Goyal et al.): base_lr x batch / 256."""
        scale = self.data.batch_size / 256 if self.optim.lr_scaling == "linear" else 1.0
        return self.optim.base_lr * scale

    def to_dict(self) -> dict:
        return self.model_dump()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


SECTIONS: dict[str, type[Section]] = {
    "data": DataConfig,
    "model": ModelConfig,
    "method": MethodConfig,
    "optim": OptimConfig,
    "distributed": DistributedConfig,
    "eval": EvalConfig,
    "run": RunConfig,
}


def keeps_batch(cfg: Config, world: int, batch: int | None = None) -> bool:
    """Whether ``world`` workers can train the global batch (or ``batch``) with the configured
    ``grad_accum`` (``WorldPlan.fits``)."""
    return WorldPlan.fits(batch or cfg.data.batch_size, world, cfg.distributed.grad_accum)


def _fitting_counts(cfg: Config) -> list[int]:
    return [w for w in cfg.worker_counts() if keeps_batch(cfg, w)]


def method_section(raw: Any) -> MethodConfig:
    """The ``method:`` mapping validated by the model of the method it names."""
    name = raw.get("name", MethodConfig.model_fields["name"].default) if isinstance(raw, dict) else None
    REGISTRY, BROKEN = plugins.methods()
    if isinstance(name, str) and name in BROKEN:
        raise ConfigError(f"method.name: {name!r}: {BROKEN[name]}")
    if isinstance(name, str) and name not in REGISTRY:
        raise ConfigError(f"method.name: unknown method {name!r}; available: {', '.join(sorted(REGISTRY))}")
    model = REGISTRY[name].Config if isinstance(name, str) else MethodConfig
    section = build(model, "method", raw, what=f"method {name}" if isinstance(name, str) else None)
    assert isinstance(section, MethodConfig)
    return section


def from_dict(raw: dict | None) -> Config:
    """A ``Config`` from plain sections (a YAML document), validated; touches no filesystem."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping with sections {', '.join(SECTIONS)}, got {raw!r}")
    unknown = sorted(set(raw) - set(SECTIONS), key=str)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown section; allowed sections: {', '.join(SECTIONS)}")
    sections: dict[str, Any] = {
        name: method_section(raw.get(name)) if name == "method" else build(model, name, raw.get(name))
        for name, model in SECTIONS.items()
    }
    cfg = Config.model_construct(**sections)  # each section was validated just now
    check_across(cfg)
    return cfg


def _with_literal_name(name: str, model: type[MethodConfig]) -> type[MethodConfig]:
    """``model`` with ``name`` fixed to this method's name (a discriminated union needs it)."""
    literal: Any = Literal[name]
    return create_model(f"method_{name}", __base__=model, name=(literal, Field(name, description="the method")))


def schema() -> dict:
    """The JSON Schema of a config file (draft 2020-12): every section, and ``method`` as one model
    per registered method, told apart by ``name`` (an editor completes a method's own keys)."""
    variants = [_with_literal_name(name, cls.Config) for name, cls in sorted(plugins.methods()[0].items())]
    method: Any = Annotated[Union[tuple(variants)], Field(discriminator="name")]  # noqa: UP007 (a runtime tuple)
    whole = create_model("RayclConfig", __base__=Config, method=(method, variants[0]()))
    doc = whole.model_json_schema()
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["title"] = "raycl config"
    return doc


def from_user(raw: dict | None) -> Config:
    """A config given on the driver (a file, overrides, a dict): validated, its local paths resolved
    against the working directory and the data paths checked to exist, once. Workers and trials
    receive the object itself and never validate it again."""
    cfg = resolved(from_dict(raw))
    check_paths(cfg)
    cfg._checked = True
    return cfg


def check_across(cfg: Config) -> None:
    """Rules between sections; each section checked its own keys when it was built."""
    cfg.method.check(cfg)
    _check_batch(cfg)
    d, o, epochs = cfg.distributed, cfg.optim, cfg.run.epochs
    if o.name == "lars" and d.zero_stage == 0 and d.precision == "bf16":
        raise ConfigError(
            "distributed.zero_stage: 0 with bf16 makes DeepSpeed partition fp32 master weights in a way "
            "LARS cannot see layers through; use distributed.zero_stage: 1 or 2 with optim.name: lars"
        )
    if o.warmup_epochs >= epochs and epochs > 1:
        raise ConfigError(f"optim.warmup_epochs: {o.warmup_epochs} must be less than run.epochs={epochs}")
    if o.milestones and (sorted(o.milestones) != o.milestones or not all(0 < m < epochs for m in o.milestones)):
        raise ConfigError(
            f"optim.milestones: {o.milestones} must be increasing epochs between 1 and run.epochs - 1 = {epochs - 1}"
        )
    if o.final_lr > cfg.lr:
        raise ConfigError(f"optim.final_lr: {o.final_lr} exceeds the peak lr {cfg.lr:g}")


def _check_batch(cfg: Config) -> None:
    """The global batch splits into equal micro-batches on every worker count the run may have."""
    d, G = cfg.distributed, cfg.data.batch_size
    fitting = _fitting_counts(cfg)
    if d.min_workers is None and not fitting:
        per = d.workers * d.grad_accum
        raise ConfigError(
            f"data.batch_size: {G} is not divisible by distributed.workers x distributed.grad_accum = "
            f"{d.workers} x {d.grad_accum} = {per}; use a multiple of {per} such as {max(G // per * per, per)} "
            f"or {G // per * per + per}"
        )
    if len(fitting) < len(cfg.worker_counts()):
        whole = [
            b for b in range(max(1, G // 2), 2 * G + 1) if all(keeps_batch(cfg, w, b) for w in cfg.worker_counts())
        ]
        near = sorted(whole, key=lambda b: abs(b - G))[:2]
        raise ConfigError(
            f"data.batch_size: {G} cannot be split into {d.grad_accum} equal micro-batch(es) per worker on every "
            f"worker count in distributed.workers [{d.min_workers}, {d.workers}]: "
            f"{', '.join(map(str, fitting)) or 'none'} can, "
            f"{', '.join(str(w) for w in cfg.worker_counts() if w not in fitting)} cannot"
            + (f"; batch sizes that keep the whole range: {', '.join(map(str, sorted(near)))}" if near else "")
        )
