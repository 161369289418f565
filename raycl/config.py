"""Typed, validated configuration.

A config is seven sections, each a strict pydantic model (``raycl.fields.Section``); the ``method``
section is the model of the method it names (``Method.Config``, in the method's own file), so a key
of another method is refused as unknown. ``load_config`` reads YAML, applies ``key.sub=value``
overrides and validates everything on the driver, before any Ray worker starts, so a typo costs one
clear error instead of a cluster allocation. ``schema()`` is the JSON Schema of the whole file.
"""

from __future__ import annotations

import copy
import os
import re
from typing import Annotated, Any, Literal, Union

import fsspec
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializeAsAny,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from raycl.errors import ConfigError
from raycl.fields import MAX_CLASSES, NotBool, Number, Section, build
from raycl.methods import BROKEN, REGISTRY, MethodConfig
from raycl.models import check_backbone
from raycl.world import WorldPlan

__all__ = ["MAX_CLASSES", "Config", "load_config", "from_dict", "from_user", "apply_overrides", "schema"]

LOGGERS = ("tensorboard", "mlflow", "wandb")
# What a user may write for distributed.workers (the model holds max, and min in min_workers).
WORKERS_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": 4096},
        {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 4096}, "minItems": 2, "maxItems": 2},
    ],
    "default": 2,
    "description": "workers; [min, max] runs elastically",
}


class DataConfig(Section):
    dataset: Literal["demo", "parquet"] = Field("demo", description="demo: the built-in digits; parquet: shards")
    path: str | None = Field(None, description="fsspec URL of a folder of Parquet shards (dataset: parquet)")
    eval_path: str | None = Field(None, description="held-out shards; default: hold out eval_fraction of path")
    eval_fraction: Number = Field(0.2, gt=0.0, le=0.9, description="share of path held out when eval_path is unset")
    num_samples: int | None = Field(None, ge=1, description="demo: use only the first N training samples")
    image_size: int = Field(28, ge=8, le=4096, description="side of the square images the model sees")
    channels: Annotated[Literal[1, 3], NotBool] = Field(1, description="1: grey, 3: colour")
    batch_size: int = Field(256, ge=1, le=1 << 20, description="global batch per optimizer step")
    on_corrupt: Literal["error", "skip"] = Field("error", description="an image that does not decode")
    drop_last: bool = Field(False, description="drop the last partial batch of an epoch (else padded)")
    shuffle_window: int = Field(65536, ge=1, le=1 << 30, description="in-memory data: rows a worker shuffles together")
    mix_row_groups: int = Field(16, ge=1, le=1 << 16, description="Parquet: row groups a worker mixes at once")
    prefetch: int = Field(4, ge=1, le=1024, description="batches decoded ahead of the training step")
    decode_workers: int | None = Field(None, ge=1, le=256, description="decode threads per worker; default: its CPUs")
    decode: Literal["cpu", "gpu"] = Field("cpu", description="gpu: image bytes decoded in batches on the device")
    preload: bool = Field(
        False,
        description="Parquet: each worker decodes every training row once at start and "
        "trains from memory (datasets whose decoded size fits a worker: Fashion-MNIST 47 MB)",
    )
    rows: str | None = Field(
        None,
        description="a file listing the training rows to use (row numbers, one per line): a label subset, "
        "as raycl finetune writes",
    )
    validation: bool = Field(
        False,
        description="hold out eval_fraction of the training rows, train on the rest and monitor on those "
        "(hyper-parameter search that never sees the held-out shards or digits)",
    )
    # SimCLR's augmentation (Chen et al. appendix A) at its paper strengths unless set; small grey
    # digits want milder crops and no flips (the demo recipe).
    crop_scale: list[Number] | None = Field(
        None, description="random resized crop area range [lo, hi]; default [0.2, 1] under 64 px, [0.08, 1] above"
    )
    flip_p: Number = Field(0.5, ge=0.0, le=1.0, description="horizontal flip probability of contrastive views")
    jitter_p: Number = Field(
        0.8, ge=0.0, le=1.0, description="colour jitter probability (brightness and contrast on grey)"
    )
    blur_p: Number | None = Field(
        None, ge=0.0, le=1.0, description="Gaussian blur probability; default 0.5 at 64 px and up, else 0"
    )

    @model_validator(mode="after")
    def _sources(self) -> DataConfig:
        if self.dataset == "parquet" and not self.path:
            raise ConfigError("data.path: required when data.dataset is 'parquet' (an fsspec URL of Parquet shards)")
        if self.dataset != "parquet" and self.path:
            raise ConfigError("data.path: only used with data.dataset: parquet; the demo dataset is built in")
        if self.num_samples is not None and self.dataset != "demo":
            raise ConfigError("data.num_samples: only applies to the demo dataset; write a smaller shard set instead")
        return self

    @field_validator("crop_scale")
    @classmethod
    def _crop_scale(cls, v):
        if v is not None and (len(v) != 2 or not 0 < v[0] <= v[1] <= 1):
            raise ValueError("expected [lo, hi] with 0 < lo <= hi <= 1")
        return v

    @model_validator(mode="after")
    def _decoding(self) -> DataConfig:
        if self.preload and (self.dataset != "parquet" or self.decode == "gpu"):
            raise ConfigError(
                "data.preload: decodes Parquet shards into memory on the CPU; it needs data.dataset: "
                "parquet and data.decode: cpu"
            )
        if self.decode == "gpu" and self.dataset != "parquet":
            raise ConfigError(
                "data.decode: gpu decodes image bytes from Parquet shards; the demo data is already pixels"
            )
        if self.decode == "gpu" and self.on_corrupt == "skip":
            raise ConfigError(
                "data.on_corrupt: skip needs data.decode: cpu (a batch decoded on the device fails as a "
                "whole); run `raycl data convert`, which leaves out files that do not decode"
            )
        return self


class ModelConfig(Section):
    backbone: str = Field("resnet18", description="resnet18, resnet50, vgg16, preact_resnet18 or wrn<depth>_<k>")
    stem: Literal["small", "imagenet"] = Field("small", description="small: 3x3 conv, no max-pool (28-32 px images)")
    width: int = Field(64, ge=4, le=4096, description="channels of the first stage (64 in torchvision)")
    proj_hidden_dim: int = Field(512, ge=1, le=1 << 16, description="projector's hidden width")
    proj_out_dim: int = Field(128, ge=1, le=1 << 16, description="projector's output width (the embedding)")
    sync_bn: bool = Field(False, description="BatchNorm statistics over the global micro-batch")
    pool: Literal["global", "avg8"] = Field("global", description="wrn: global average, or ImCLR's 8x8 average")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, name: str) -> str:
        check_backbone(name)
        return name


class OptimConfig(Section):
    name: Literal["sgd", "lars"] = Field("sgd", description="lars: SGD with layer-wise trust ratios (You et al.)")
    base_lr: Number = Field(0.3, ge=0.0, description="lr at batch 256 (linear scaling rule)")
    lr_scaling: Literal["linear", "none"] = Field("linear", description="linear: lr = base_lr x batch / 256")
    momentum: Number = Field(0.9, ge=0.0, le=1.0, description="SGD momentum (LARS too)")
    weight_decay: Number = Field(1e-6, ge=0.0, description="L2 penalty (LARS: scaled by the trust ratio)")
    schedule: Literal["cosine", "step"] = Field("cosine", description="after warm-up: cosine to final_lr, or step")
    warmup_epochs: Number = Field(1.0, ge=0.0, description="linear warm-up from 0")
    warmup_steps: int | None = Field(None, ge=0, description="overrides warmup_epochs when set")
    final_lr: Number = Field(0.0, ge=0.0, description="cosine: lr at the last step")
    milestones: list[int] = Field([], description="step: epochs where lr is multiplied by gamma")
    gamma: Number = Field(0.1, gt=0.0, le=1.0, description="step: the factor at each milestone")
    trust_coefficient: Number = Field(0.001, gt=0.0, description="lars: eta in the trust ratio")
    lars_exclude_bias_and_norm: bool = Field(True, description="lars: biases and norm weights take plain SGD")
    lars_exclude: list[str] = Field([], description="lars: regexes of parameter names also excluded")
    grad_clip: Number | None = Field(None, gt=0.0, description="clip the global gradient norm; null = no clipping")

    @model_validator(mode="after")
    def _schedule(self) -> OptimConfig:
        if self.schedule == "step" and not self.milestones:
            raise ConfigError("optim.milestones: the step schedule needs epochs to decay at, e.g. [150, 225]")
        for pattern in self.lars_exclude:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(f"optim.lars_exclude: {pattern!r} is not a valid regular expression: {e}") from None
        return self


class DistributedConfig(Section):
    workers: Annotated[int, WithJsonSchema(WORKERS_SCHEMA)] = Field(
        2, ge=1, le=4096, description="workers; [min, max] runs elastically (YAML list)"
    )
    min_workers: int | None = Field(None, ge=1, le=4096, description="set by workers: [min, max]; null: a fixed count")
    resize_check_s: Number = Field(60.0, gt=0.0, description="elastic runs: seconds between checks for room to grow")
    use_gpu: bool = Field(False, description="one GPU per worker (NCCL); false: CPU workers (gloo)")
    cpus_per_worker: Number = Field(1.0, gt=0.0, le=1024, description="CPUs Ray reserves for each worker")
    zero_stage: Annotated[Literal[0, 1, 2], NotBool] = Field(1, description="DeepSpeed ZeRO stage")
    grad_accum: int = Field(1, ge=1, le=4096, description="micro-batches per optimizer step")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16 needs use_gpu")
    torch_threads: int | None = Field(None, ge=1, le=1024, description="intra-op threads per CPU worker")
    channels_last: bool = Field(False, description="NHWC inputs (GPU convolutions run NHWC kernels)")

    @model_validator(mode="before")
    @classmethod
    def _worker_range(cls, raw: Any) -> Any:
        """``workers: [min, max]`` -> ``workers: max, min_workers: min``."""
        if not isinstance(raw, dict) or not isinstance(raw.get("workers"), list):
            return raw
        w = raw["workers"]
        if len(w) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in w):
            raise ConfigError(f"distributed.workers: expected an integer or [min, max], got {w!r}")
        if "min_workers" in raw:
            raise ConfigError("distributed.min_workers: give the range once, as distributed.workers: [min, max]")
        low, high = w
        if low < 1:
            raise ConfigError(f"distributed.workers: the minimum must be >= 1, got {w!r}")
        if low > high:
            raise ConfigError(f"distributed.workers: [min, max] has min > max ({w!r}); write [{high}, {low}]")
        return {**raw, "workers": high, "min_workers": low}

    @model_validator(mode="after")
    def _consistent(self) -> DistributedConfig:
        if self.min_workers is not None and self.min_workers > self.workers:
            raise ConfigError(
                f"distributed.min_workers: {self.min_workers} is more than distributed.workers={self.workers}"
            )
        if self.precision == "bf16" and not self.use_gpu:
            raise ConfigError("distributed.precision: bf16 needs distributed.use_gpu: true; use fp32 on CPU")
        return self


class EvalConfig(Section):
    knn_k: int = Field(200, ge=1, le=1 << 16, description="neighbours of the kNN classifier")
    knn_temperature: Number = Field(0.1, gt=0.0, description="kNN vote weights exp(sim / T)")
    every_epochs: int = Field(1, ge=1, description="epochs between kNN monitor evaluations")
    max_train_samples: int | None = Field(
        65536, ge=1, description="kNN monitor's bank: a seeded random sample of this many training rows (null: all)"
    )
    max_eval_samples: int | None = Field(
        10000, ge=1, description="kNN monitor's queries: a seeded random sample of this many held-out rows (null: all)"
    )
    linear_epochs: int = Field(30, ge=1, le=100_000, description="epochs of the linear probe")
    linear_lr: Number = Field(0.1, gt=0.0, description="lr of the linear probe")


class RunConfig(Section):
    name: str = Field("raycl", description="the run's folder under storage_path")
    storage_path: str = Field("~/raycl_runs", description="where runs are kept (a folder or fsspec URL)")
    epochs: int = Field(10, ge=1, le=1_000_000, description="passes over the training rows")
    seed: int = Field(0, description="seeds initialisation, shuffling, augmentation and held-out splits")
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept (the newest)")
    max_failures: int = Field(0, ge=-1, le=1_000_000, description="worker-group restarts; -1 = unlimited")
    log_every: int = Field(10, ge=1, description="steps between progress events and per-step logged scalars")
    loggers: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        ["tensorboard"], description="any of tensorboard, mlflow, wandb; [] = none"
    )
    log_dir: str | None = Field(None, description="where loggers write (default: the run directory on local storage)")
    stop_after_epochs: int | None = Field(None, ge=1, description="end this invocation early; rerun resumes")
    stop_after_steps: int | None = Field(
        None,
        ge=1,
        description="end this invocation after this many steps, "
        "checkpointing mid-epoch; rerun resumes at the next step",
    )
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="also checkpoint every this many steps inside an epoch (long epochs, preemptible nodes)"
    )

    @field_validator("name")
    @classmethod
    def _one_folder(cls, name: str) -> str:
        if not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0\n"):
            raise ConfigError(
                f"run.name: {name!r} must be one folder name under run.storage_path (no '/', '\\', "
                "'..' or line breaks); put the runs elsewhere with run.storage_path"
            )
        return name

    @field_validator("loggers", mode="before")
    @classmethod
    def _known_loggers(cls, names: Any) -> Any:
        for name in names if isinstance(names, list) else []:
            if isinstance(name, str) and name not in LOGGERS:
                raise ConfigError(f"run.loggers: unknown logger {name!r}; available: {', '.join(LOGGERS)}")
        return names

    @model_validator(mode="after")
    def _checkpoints(self) -> RunConfig:
        if self.checkpoint_every > self.epochs:
            raise ConfigError(
                f"run.checkpoint_every: {self.checkpoint_every} is more than run.epochs={self.epochs}; "
                "no checkpoint would be written"
            )
        return self


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


# ---------------------------------------------------------------------------------------------
# Loading and validation


def keeps_batch(cfg: Config, world: int, batch: int | None = None) -> bool:
    """Whether ``world`` workers can train the global batch (or ``batch``) with the configured
    ``grad_accum`` (``WorldPlan.fits``)."""
    return WorldPlan.fits(batch or cfg.data.batch_size, world, cfg.distributed.grad_accum)


def _fitting_counts(cfg: Config) -> list[int]:
    return [w for w in cfg.worker_counts() if keeps_batch(cfg, w)]


def method_section(raw: Any) -> MethodConfig:
    """The ``method:`` mapping validated by the model of the method it names."""
    name = raw.get("name", MethodConfig.model_fields["name"].default) if isinstance(raw, dict) else None
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
    variants = [_with_literal_name(name, cls.Config) for name, cls in sorted(REGISTRY.items())]
    method: Any = Annotated[Union[tuple(variants)], Field(discriminator="name")]  # noqa: UP007 (a runtime tuple)
    whole = create_model("RayclConfig", __base__=Config, method=(method, variants[0]()))
    doc = whole.model_json_schema()
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["title"] = "raycl config"
    return doc


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """A copy of ``raw`` with ``section.key=value`` strings applied; values are parsed as YAML scalars
    (``0.1``, ``true``, ``null``). ``raw`` itself is left alone: callers apply several override sets
    to one base (bench quality's presets, sweep trials)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping with sections {', '.join(SECTIONS)}, got {raw!r}")
    raw = copy.deepcopy(raw)
    for item in overrides or []:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"override {item!r}: expected section.key=value, e.g. optim.base_lr=0.1")
        section, sub = parts
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({_yaml_problem(e)})") from None
        node = raw.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{section}: expected a mapping of keys, got {node!r}")
        node[sub] = value
    return raw


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error as one line: what is wrong and where."""
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(e, 'problem', None) or type(e).__name__}{where}"


def read_yaml(path: str, what: str = "config file"):
    """The YAML document at ``path`` (any fsspec URL, or ``recipe:NAME`` for a recipe that ships with
    raycl); a missing, unreadable or malformed file is one ConfigError naming it."""
    from raycl import recipes

    path = recipes.resolve(path)
    try:
        with fsspec.open(path, "r", encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path!r} is a directory; pass a YAML file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path!r} is not UTF-8 text (byte {e.start}); pass a YAML file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path!r} is not valid YAML: {_yaml_problem(e)}") from None
    except OSError as e:
        raise ConfigError(f"{what} {path!r} cannot be read: {e}") from None
    if raw is None:  # an empty file is far more often a slip (a truncated write, the wrong file) than a wish
        raise ConfigError(f"{what} {path!r} is empty; write {{}} in it to mean every default")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{what} {path!r}: expected a mapping of sections ({', '.join(SECTIONS)}), got a {type(raw).__name__}"
        )
    return raw


def load_config(path: str | None = None, overrides: list[str] | None = None) -> Config:
    raw = read_yaml(path) if path is not None else {}
    return from_user(apply_overrides(raw, overrides or []))


# Fields that name a place. A person types them relative to the shell they are in; Ray Train workers
# run in a directory of their own, so the driver makes them absolute before anything is sent on.
PATH_FIELDS = (("data", "path"), ("data", "eval_path"), ("data", "rows"), ("run", "storage_path"), ("run", "log_dir"))


def local_path(url: str) -> str:
    """``url`` made absolute against this process's working directory, ``~`` expanded; a URL with a
    scheme (``s3://``, ``memory://``, ``file://``) is left as it is."""
    if "://" in url:
        return url
    return os.path.abspath(os.path.expanduser(url))


def _method_model(raw_method: Any) -> type[MethodConfig]:
    name = raw_method.get("name", MethodConfig.model_fields["name"].default) if isinstance(raw_method, dict) else None
    return REGISTRY[name].Config if isinstance(name, str) and name in REGISTRY else MethodConfig


def path_fields(raw_method: Any = None) -> list[tuple[str, str]]:
    """(section, key) of every field that names a place: ``PATH_FIELDS`` and the method's own."""
    return [*PATH_FIELDS, *(("method", key) for key in _method_model(raw_method).path_fields)]


def resolve_paths(raw: dict) -> dict:
    """A copy of the raw sections with every path field (``path_fields``) made absolute."""
    out = copy.deepcopy(raw)
    for section, key in path_fields(out.get("method")):
        node = out.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), str) and node[key]:
            node[key] = local_path(node[key])
    return out


def stored_config(raw: dict) -> Config:
    """A config raycl wrote itself (a checkpoint's ``model.pt``). A checkpoint written before each
    method had its own config section stores every method's keys in ``method``; the keys the named
    method does not have are dropped (they did nothing for it). Local paths of an older raycl may be
    relative: they are read from here."""
    raw = resolve_paths(raw)
    method = raw.get("method")
    if isinstance(method, dict):
        raw["method"] = {k: v for k, v in method.items() if k in _method_model(method).model_fields}
    return from_dict(raw)


def from_user(raw: dict | None) -> Config:
    """A config given on the driver (a file, overrides, a dict): its local paths resolved against the
    working directory and the data paths checked to exist. Workers and trials rebuild the resolved
    config with ``from_dict``, which touches no filesystem."""
    cfg = from_dict(raw)
    for section, key in path_fields(cfg.method.model_dump()):  # defaults included (run.storage_path)
        value = getattr(getattr(cfg, section), key)
        if value:
            cfg = cfg.replace(section, **{key: local_path(value)})
    check_paths(cfg)
    cfg._checked = True
    return cfg


def check_paths(cfg: Config) -> None:
    if cfg.data.dataset == "parquet" and cfg.data.path:
        _require_exists("data.path", cfg.data.path)
    if cfg.data.eval_path:
        _require_exists("data.eval_path", cfg.data.eval_path)
    if cfg.data.rows:
        _require_exists("data.rows", cfg.data.rows)
    for key in cfg.method.path_fields:
        if getattr(cfg.method, key):
            _require_exists(f"method.{key}", getattr(cfg.method, key))


def ensure_config(cfg) -> Config:
    """The API boundary: a ``Config`` as it is when the driver built it (``from_user``: frozen, so
    nothing changed since), else validated now, as a plain dict of sections is."""
    if isinstance(cfg, Config) and cfg._checked:
        return cfg
    if isinstance(cfg, Config):
        try:
            raw = cfg.to_dict()
        except Exception as e:
            raise ConfigError(f"config: cannot be read back ({type(e).__name__}: {e})") from None
        return from_user(raw)
    if isinstance(cfg, dict):
        return from_user(cfg)
    raise ConfigError(f"config: expected a raycl Config or a dict of sections, got {type(cfg).__name__}")


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


def _require_exists(field_name: str, url: str) -> None:

    try:
        fs, p = fsspec.core.url_to_fs(url)
        exists = fs.exists(p)
    except Exception as e:  # an unknown protocol, a malformed URL
        raise ConfigError(f"{field_name}: cannot open {url!r}: {e}") from None
    if not exists:
        raise ConfigError(f"{field_name}: {url!r} does not exist")
