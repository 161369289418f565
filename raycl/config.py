"""Typed, validated configuration.

A config is seven sections of plain dataclasses.  ``load_config`` reads YAML, applies ``key.sub=value``
overrides and validates everything on the driver, before any Ray worker starts, so a typo costs one
clear error instead of a cluster allocation.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from raycl.errors import ConfigError

# Labels are class ids 0..C-1 (-1: unknown). More classes than this is an id column, not a label.
MAX_CLASSES = 1_000_000


def _f(default, *, ge=None, gt=None, le=None, help=""):
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "help": help})


@dataclass
class DataConfig:
    dataset: Literal["demo", "parquet"] = "demo"
    path: str | None = None  # fsspec URL of a folder of Parquet shards (dataset: parquet)
    eval_path: str | None = None  # held-out shards; default: hold out eval_fraction of path
    eval_fraction: float = _f(0.2, gt=0.0, le=0.9)
    num_samples: int | None = _f(None, ge=1, help="use only the first N training samples")
    image_size: int = _f(28, ge=8, le=4096)
    channels: Literal[1, 3] = 1
    batch_size: int = _f(256, ge=1, le=1 << 20, help="global batch per optimizer step")
    on_corrupt: Literal["error", "skip"] = "error"
    drop_last: bool = False
    shuffle_window: int = _f(65536, ge=1, le=1 << 30, help="in-memory data: rows a worker shuffles together")
    mix_row_groups: int = _f(16, ge=1, le=1 << 16, help="Parquet: row groups a worker mixes into its batches at once")
    prefetch: int = _f(4, ge=1, le=1024, help="batches decoded ahead of the training step")
    decode_workers: int | None = _f(None, ge=1, le=256, help="decode threads per worker; default: its CPUs")
    decode: Literal["cpu", "gpu"] = "cpu"  # gpu: image bytes decoded in batches on the training device
    preload: bool = _f(
        False,
        help="Parquet: each worker decodes every training row once at start and trains "
        "from memory (datasets whose decoded size fits a worker: Fashion-MNIST 47 MB)",
    )


@dataclass
class ModelConfig:
    backbone: str = _f("resnet18", help="resnet18, resnet50, vgg16, preact_resnet18 or wrn<depth>_<k>")
    stem: Literal["small", "imagenet"] = "small"
    width: int = _f(64, ge=4, le=4096, help="channels of the first stage (64 in torchvision)")
    proj_hidden_dim: int = _f(512, ge=1, le=1 << 16)
    proj_out_dim: int = _f(128, ge=1, le=1 << 16)
    sync_bn: bool = False
    pool: Literal["global", "avg8"] = "global"  # wrn: global average, or ImCLR's 8x8 average + flatten


@dataclass
class MethodConfig:
    name: str = "simclr"
    temperature: float = _f(0.5, gt=0.0)
    views: int | None = _f(None, ge=2, le=64, help="augmented views per sample; default: the method's own")
    supervised: bool = False  # tcl: positives are same-label samples (else views of one image)
    k1: float = _f(1.0, ge=0.0)  # tcl: weight of the positives' exp(-z_i.z_p) term
    k2: float = _f(1.0, ge=0.0)  # tcl: weight of the negatives
    queue_size: int = _f(65536, ge=1, le=1 << 24)  # moco_v2: negatives kept from past batches
    key_momentum: float = _f(0.999, ge=0.0, le=1.0)  # moco_v2: EMA of the key encoder
    perturbation: Literal["history", "dropout", "noise"] = "dropout"  # simclic
    dropout_p: float = _f(0.2, ge=0.0, le=1.0)  # simclic dropout
    noise_eps: float = _f(0.5, ge=0.0)  # simclic noise: ||delta||_2
    history_tau: float = _f(0.3, ge=0.0, le=1.0)  # simclic history
    bank_size: int | None = _f(None, ge=1, le=1 << 31, help="per-sample store size (>= largest sample index + 1)")
    bank_momentum: float = _f(0.5, gt=0.0, le=1.0)  # interclr: w in v <- (1 - w) v + w v_new
    num_clusters: int = _f(10000, ge=1, le=1 << 24)  # interclr: k of the online k-means
    num_negatives: int = _f(16384, ge=1, le=1 << 24)  # interclr: K per anchor and branch
    strategy: Literal["semi_hard", "hard", "random", "semi_easy"] = "semi_hard"  # interclr inter negatives
    bank_init: Literal["features", "random"] = (
        "features"  # interclr: initial network's embeddings (paper 3.2) or random unit rows
    )
    bank_layout: Literal["sharded", "replicated"] = "sharded"  # interclr: rows split over workers, or on each
    bank_sync_every: int = _f(0, ge=0, help="steps between pushes of the bank to the BankServer actor; 0 = no server")
    intra_margin: float = 0.0  # interclr MarginNCE margins
    inter_margin: float = -0.5
    lam: float = _f(0.75, ge=0.0, le=1.0)  # interclr: lambda L_intra + (1 - lambda) L_inter
    concat_k: int = _f(2, ge=1, le=16)  # imclr: images concatenated along the width
    num_classes: int = _f(10, ge=2, le=MAX_CLASSES)  # imclr, supervised_ce: classifier outputs
    cutmix_p: float = _f(0.0, ge=0.0, le=1.0)  # imclr: CutMix probability per image, before concat
    autoaugment: bool = False  # imclr: AutoAugment (CIFAR-10 policy) per image
    pi_weight: float = _f(0.0, ge=0.0)  # imclr: Pi-model consistency weight (paper: 20); 0 = off
    labeled_fraction: float = _f(1.0, gt=0.0, le=1.0)  # imclr Pi-model: share of samples whose label is used
    symmetric: bool = False  # moco_v2, clsa: also contrast q(view 2) with k(view 1)
    shuffle_bn: bool = False  # moco_v2, clsa: key encoder's BN over a shuffled batch
    strong_sizes: list[int] = field(default_factory=lambda: [96])  # clsa: one strong view per size
    ddm_weight: float = _f(1.0, ge=0.0)  # clsa: beta in L_C + beta L_D


@dataclass
class OptimConfig:
    name: Literal["sgd", "lars"] = "sgd"
    base_lr: float = _f(0.3, ge=0.0, help="lr at batch 256 (linear scaling rule)")
    lr_scaling: Literal["linear", "none"] = "linear"
    momentum: float = _f(0.9, ge=0.0, le=1.0)
    weight_decay: float = _f(1e-6, ge=0.0)
    schedule: Literal["cosine", "step"] = "cosine"
    warmup_epochs: float = _f(1.0, ge=0.0)
    warmup_steps: int | None = _f(None, ge=0, help="overrides warmup_epochs when set")
    final_lr: float = _f(0.0, ge=0.0, help="cosine: lr at the last step")
    milestones: list[int] = field(default_factory=list)  # step: epochs where lr is multiplied by gamma
    gamma: float = _f(0.1, gt=0.0, le=1.0)
    trust_coefficient: float = _f(0.001, gt=0.0)
    lars_exclude_bias_and_norm: bool = True
    lars_exclude: list[str] = field(default_factory=list)  # regexes of parameter names also excluded
    grad_clip: float | None = _f(None, gt=0.0, help="clip the global gradient norm; null = no clipping")


@dataclass
class DistributedConfig:
    workers: int = _f(2, ge=1, le=4096, help="workers; [min, max] runs elastically (YAML list)")
    min_workers: int | None = _f(None, ge=1, le=4096, help="set by workers: [min, max]; null: a fixed count")
    resize_check_s: float = _f(60.0, gt=0.0, help="elastic runs: seconds between checks for room to grow")
    use_gpu: bool = False
    cpus_per_worker: float = _f(1.0, gt=0.0, le=1024)
    zero_stage: Literal[0, 1, 2] = 1
    grad_accum: int = _f(1, ge=1, le=4096)
    precision: Literal["fp32", "bf16"] = "fp32"
    torch_threads: int | None = _f(None, ge=1, le=1024, help="intra-op threads per CPU worker")
    channels_last: bool = (
        False  # NHWC inputs (GPU convolutions run NHWC kernels); parameters stay as DeepSpeed laid them out
    )


@dataclass
class EvalConfig:
    knn_k: int = _f(200, ge=1, le=1 << 16)
    knn_temperature: float = _f(0.1, gt=0.0)
    every_epochs: int = _f(1, ge=1)
    max_train_samples: int | None = _f(
        65536, ge=1, help="kNN monitor's bank: a seeded random sample of this many training rows (null: all)"
    )
    max_eval_samples: int | None = _f(
        10000, ge=1, help="kNN monitor's queries: a seeded random sample of this many held-out rows (null: all)"
    )
    linear_epochs: int = _f(30, ge=1, le=100_000)
    linear_lr: float = _f(0.1, gt=0.0)


@dataclass
class RunConfig:
    name: str = "raycl"
    storage_path: str = "~/raycl_runs"
    epochs: int = _f(10, ge=1, le=1_000_000)
    seed: int = 0
    checkpoint_every: int = _f(1, ge=1)
    keep_checkpoints: int = _f(2, ge=1)
    max_failures: int = _f(0, ge=-1, le=1_000_000, help="worker-group restarts; -1 = unlimited")
    log_every: int = _f(10, ge=1, help="steps between progress events and per-step logged scalars")
    loggers: list[str] = field(default_factory=lambda: ["tensorboard"])  # and/or mlflow, wandb; [] = none
    log_dir: str | None = _f(None, help="where loggers write (default: the run directory on local storage)")
    stop_after_epochs: int | None = _f(None, ge=1, help="end this invocation early; rerun resumes")
    stop_after_steps: int | None = _f(
        None,
        ge=1,
        help="end this invocation after this many steps, checkpointing mid-epoch; rerun resumes at the next step",
    )
    checkpoint_every_steps: int | None = _f(
        None, ge=1, help="also checkpoint every this many steps inside an epoch (long epochs, preemptible nodes)"
    )


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def worker_counts(self) -> range:
        """The worker counts this run may train with (one for a fixed run)."""
        d = self.distributed
        return range(d.min_workers or d.workers, d.workers + 1)

    def at_world(self, world: int) -> Config:
        """This config as trained by ``world`` workers: the same global batch, schedule and
        ``grad_accum`` (so the same samples per forward pass, see ``keeps_batch``); each worker's
        share is G / world."""
        if not keeps_batch(self, world):
            raise ConfigError(
                f"distributed.workers: this run cannot train on {world} workers "
                f"(allowed: {', '.join(map(str, _fitting_counts(self)))})"
            )
        c = copy.deepcopy(self)
        c.distributed.workers = world
        return c

    @property
    def micro_batch(self) -> int:
        """Samples one worker feeds through the model per forward pass."""
        return self.data.batch_size // (self.distributed.workers * self.distributed.grad_accum)

    @property
    def lr(self) -> float:
        """Peak lr after the linear scaling rule (Goyal et al.): base_lr x batch / 256."""
        scale = self.data.batch_size / 256 if self.optim.lr_scaling == "linear" else 1.0
        return self.optim.base_lr * scale

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------------------------
# Loading and validation


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_describe(a) for a in inner) + " or null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _coerce(path: str, tp, value):
    origin = typing.get_origin(tp)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(
                f"{path}: expected a list of {_describe(inner).removeprefix('a ').removeprefix('an ')}s, got {value!r}"
            )
        return [_coerce(f"{path}[{i}]", inner, v) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(path, inner, value)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed and type(value) is type(allowed[allowed.index(value)]):
            return value
        raise ConfigError(f"{path}: expected {_describe(tp)}, got {value!r}")
    if tp is float and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string; users mean the number
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }.get(tp)
    if ok is None:
        raise ConfigError(f"{path}: unsupported field type {tp!r}")
    if not ok(value):
        raise ConfigError(f"{path}: expected {_describe(tp)}, got {value!r}")
    if tp is float:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
    return value


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def keeps_batch(cfg: Config, world: int, batch: int | None = None) -> bool:
    """Whether ``world`` workers can train the global batch with the configured ``grad_accum``.
    grad_accum stays fixed across worker counts so every forward pass sees G / grad_accum samples
    over all workers (a contrastive loss draws its negatives from one forward: more micro-batches at
    a lower count would shrink them and change the objective); fewer workers hold larger micro-batches."""
    G, a = batch or cfg.data.batch_size, cfg.distributed.grad_accum
    return G % (world * a) == 0


def _fitting_counts(cfg: Config) -> list[int]:
    return [w for w in cfg.worker_counts() if keeps_batch(cfg, w)]


def _split_worker_range(raw: dict) -> dict:
    """``distributed.workers: [min, max]`` -> ``workers: max, min_workers: min``."""
    w = raw.get("workers")
    if not isinstance(w, list):
        return raw
    if len(w) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in w):
        raise ConfigError(f"distributed.workers: expected an integer or [min, max], got {w!r}")
    if "min_workers" in raw:
        raise ConfigError("distributed.min_workers: give the range once, as distributed.workers: [min, max]")
    lo, hi = w
    if lo < 1:
        raise ConfigError(f"distributed.workers: the minimum must be >= 1, got {w!r}")
    if lo > hi:
        raise ConfigError(f"distributed.workers: [min, max] has min > max ({w!r}); write [{hi}, {lo}]")
    return {**raw, "workers": hi, "min_workers": lo}


def _check_range(path: str, f: dataclasses.Field, value):
    if value is None:
        return
    m = f.metadata
    if m.get("ge") is not None and value < m["ge"]:
        raise ConfigError(f"{path}: must be >= {m['ge']}, got {value!r}")
    if m.get("gt") is not None and value <= m["gt"]:
        raise ConfigError(f"{path}: must be > {m['gt']}, got {value!r}")
    if m.get("le") is not None and value > m["le"]:
        raise ConfigError(f"{path}: must be <= {m['le']}, got {value!r}")


def _build_section(name: str, cls, raw: Any):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping of keys, got {raw!r}")
    if name == "distributed":
        raw = _split_worker_range(raw)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted((set(raw) - set(fields)), key=str)
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: unknown key; allowed keys in '{name}': {', '.join(fields)}")
    values = {}
    for key, value in raw.items():
        path = f"{name}.{key}"
        value = _coerce(path, hints[key], value)
        _check_range(path, fields[key], value)
        values[key] = value
    obj = cls(**values)
    for key, f in fields.items():
        if key not in values:
            _check_range(f"{name}.{key}", f, getattr(obj, key))
    return obj


SECTIONS = {f.name: f for f in dataclasses.fields(Config)}


def from_dict(raw: dict | None) -> Config:
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping with sections {', '.join(SECTIONS)}, got {raw!r}")
    unknown = sorted(set(raw) - set(SECTIONS), key=str)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown section; allowed sections: {', '.join(SECTIONS)}")
    hints = typing.get_type_hints(Config)
    cfg = Config(**{name: _build_section(name, hints[name], raw.get(name)) for name in SECTIONS})
    validate(cfg)
    return cfg


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
    """The YAML document at ``path`` (any fsspec URL); a missing, unreadable or malformed file is one
    ConfigError naming it."""
    import fsspec

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
PATH_FIELDS = (("data", "path"), ("data", "eval_path"), ("run", "storage_path"), ("run", "log_dir"))


def local_path(url: str) -> str:
    """``url`` made absolute against this process's working directory, ``~`` expanded; a URL with a
    scheme (``s3://``, ``memory://``, ``file://``) is left as it is."""
    if "://" in url:
        return url
    return os.path.abspath(os.path.expanduser(url))


def resolve_paths(raw: dict) -> dict:
    """A copy of the raw sections with every path field (``PATH_FIELDS``) made absolute."""
    out = copy.deepcopy(raw)
    for section, key in PATH_FIELDS:
        node = out.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), str) and node[key]:
            node[key] = local_path(node[key])
    return out


def from_user(raw: dict | None) -> Config:
    """A config given on the driver (a file, overrides, a dict): its local paths resolved against the
    working directory and the data paths checked to exist. Workers and trials rebuild the resolved
    config with ``from_dict``, which touches no filesystem."""
    cfg = from_dict(raw)
    for section, key in PATH_FIELDS:  # defaults included (run.storage_path: ~/raycl_runs)
        value = getattr(getattr(cfg, section), key)
        if value:
            setattr(getattr(cfg, section), key, local_path(value))
    check_paths(cfg)
    return cfg


def check_paths(cfg: Config) -> None:
    if cfg.data.dataset == "parquet" and cfg.data.path:
        _require_exists("data.path", cfg.data.path)
    if cfg.data.eval_path:
        _require_exists("data.eval_path", cfg.data.eval_path)


def ensure_config(cfg) -> Config:
    """The API boundary: a ``Config`` (re-validated, since fields can be edited after loading) or a
    plain dict of sections."""
    if isinstance(cfg, Config):
        try:
            raw = cfg.to_dict()
        except Exception as e:
            raise ConfigError(f"config: cannot be read back ({type(e).__name__}: {e})") from None
        return from_user(raw)
    if isinstance(cfg, dict):
        return from_user(cfg)
    raise ConfigError(f"config: expected a raycl Config or a dict of sections, got {type(cfg).__name__}")


def validate(cfg: Config) -> None:
    """Cross-field checks; per-field types and ranges were checked when the sections were built."""
    from raycl.methods import BROKEN, REGISTRY
    from raycl.models import check_backbone

    check_backbone(cfg.model.backbone)
    if cfg.method.name in BROKEN:
        raise ConfigError(f"method.name: {cfg.method.name!r}: {BROKEN[cfg.method.name]}")
    if cfg.method.name not in REGISTRY:
        raise ConfigError(f"method.name: unknown method {cfg.method.name!r}; available: {', '.join(sorted(REGISTRY))}")
    from raycl.train.loggers import check_names

    check_names(cfg.run.loggers)
    name = cfg.run.name
    if not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0\n"):
        raise ConfigError(
            f"run.name: {name!r} must be one folder name under run.storage_path (no '/', '\\', "
            "'..' or line breaks); put the runs elsewhere with run.storage_path"
        )
    m, method = cfg.method, REGISTRY[cfg.method.name]
    method.check_config(cfg)
    if m.bank_sync_every and not method.serves_bank:
        raise ConfigError(f"method.bank_sync_every: only a method with a memory bank has one to serve, not {m.name}")
    for key in ("symmetric", "shuffle_bn"):
        if getattr(m, key) and not method.has_key_encoder:
            raise ConfigError(f"method.{key}: only a method with a key encoder (moco_v2, clsa) has one, not {m.name}")
    if m.shuffle_bn and cfg.model.sync_bn:
        raise ConfigError(
            "method.shuffle_bn: with model.sync_bn every BN already sees the global batch; pick one of the two"
        )
    d, G = cfg.distributed, cfg.data.batch_size
    if d.min_workers is not None and d.min_workers > d.workers:
        raise ConfigError(f"distributed.min_workers: {d.min_workers} is more than distributed.workers={d.workers}")
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
    if cfg.data.dataset == "parquet":
        if not cfg.data.path:
            raise ConfigError("data.path: required when data.dataset is 'parquet' (an fsspec URL of Parquet shards)")
    elif cfg.data.path:
        raise ConfigError("data.path: only used with data.dataset: parquet; the demo dataset is built in")
    if cfg.data.preload and (cfg.data.dataset != "parquet" or cfg.data.decode == "gpu"):
        raise ConfigError(
            "data.preload: decodes Parquet shards into memory on the CPU; it needs data.dataset: "
            "parquet and data.decode: cpu"
        )
    if cfg.data.decode == "gpu" and cfg.data.dataset != "parquet":
        raise ConfigError("data.decode: gpu decodes image bytes from Parquet shards; the demo data is already pixels")
    if cfg.data.decode == "gpu" and cfg.data.on_corrupt == "skip":
        raise ConfigError(
            "data.on_corrupt: skip needs data.decode: cpu (a batch decoded on the device fails as a "
            "whole); run `raycl data convert`, which leaves out files that do not decode"
        )
    if cfg.data.num_samples is not None and cfg.data.dataset != "demo":
        raise ConfigError("data.num_samples: only applies to the demo dataset; write a smaller shard set instead")
    if cfg.optim.name == "lars" and d.zero_stage == 0 and d.precision == "bf16":
        raise ConfigError(
            "distributed.zero_stage: 0 with bf16 makes DeepSpeed partition fp32 master weights in a way "
            "LARS cannot see layers through; use distributed.zero_stage: 1 or 2 with optim.name: lars"
        )
    if cfg.run.checkpoint_every > cfg.run.epochs:
        raise ConfigError(
            f"run.checkpoint_every: {cfg.run.checkpoint_every} is more than run.epochs={cfg.run.epochs}; "
            "no checkpoint would be written"
        )
    if cfg.optim.warmup_epochs >= cfg.run.epochs and cfg.run.epochs > 1:
        raise ConfigError(
            f"optim.warmup_epochs: {cfg.optim.warmup_epochs} must be less than run.epochs={cfg.run.epochs}"
        )
    o = cfg.optim
    if o.schedule == "step" and not o.milestones:
        raise ConfigError("optim.milestones: the step schedule needs epochs to decay at, e.g. [150, 225]")
    if o.milestones and (sorted(o.milestones) != o.milestones or not all(0 < m < cfg.run.epochs for m in o.milestones)):
        raise ConfigError(
            f"optim.milestones: {o.milestones} must be increasing epochs between 1 and "
            f"run.epochs - 1 = {cfg.run.epochs - 1}"
        )
    for pat in o.lars_exclude:
        try:
            re.compile(pat)
        except re.error as e:
            raise ConfigError(f"optim.lars_exclude: {pat!r} is not a valid regular expression: {e}") from None
    if cfg.optim.final_lr > cfg.lr:
        raise ConfigError(f"optim.final_lr: {cfg.optim.final_lr} exceeds the peak lr {cfg.lr:g}")
    if d.precision == "bf16" and not d.use_gpu:
        raise ConfigError("distributed.precision: bf16 needs distributed.use_gpu: true; use fp32 on CPU")


def _require_exists(field_name: str, url: str) -> None:
    import fsspec

    try:
        fs, p = fsspec.core.url_to_fs(url)
        exists = fs.exists(p)
    except Exception as e:  # an unknown protocol, a malformed URL
        raise ConfigError(f"{field_name}: cannot open {url!r}: {e}") from None
    if not exists:
        raise ConfigError(f"{field_name}: {url!r} does not exist")
