"""The sections of a config file other than ``method`` (each method's is in its own file): strict
pydantic models (``raycl.fields.Section``), each checking its own keys."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, WithJsonSchema, field_validator, model_validator

from raycl.errors import ConfigError
from raycl.fields import NotBool, Number, Section

# The backbones raycl.models builds, by name: torchvision's ResNets, VGG-16, PreAct ResNet-18 and the
# Wide ResNets (depth and widening factor in the name). tests/models/test_views_models.py holds the two to
# the same list.
RESNETS = ("resnet18", "resnet50")
BACKBONES = (*RESNETS, "vgg16", "preact_resnet18", "wrn<depth>_<k>")
WRN = re.compile(r"wrn(\d+)_(\d+)$")


def check_backbone(name: str) -> None:
    if name in RESNETS or name in ("vgg16", "preact_resnet18") or WRN.match(name):
        return
    raise ConfigError(f"model.backbone: unknown backbone {name!r}; available: {', '.join(BACKBONES)}")


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


class MethodConfig(Section):
    """The ``method:`` keys every method has. A method with keys of its own subclasses this in its
    file and names it as its ``Config``; its cross-field rules go in ``check``; keys that name a file
    go in ``path_fields`` (made absolute on the driver, checked to exist there and on the workers)."""

    path_fields: ClassVar[tuple[str, ...]] = ()

    name: str = Field(
        "simclr",
        description="the method: a name in raycl's registry (an unknown name is refused with the list), "
        "or one registered by a `raycl.methods` entry point",
    )
    temperature: Number = Field(0.5, gt=0.0, description="softmax temperature of the contrastive loss")
    views: int | None = Field(None, ge=2, le=64, description="augmented views per sample; default: the method's own")

    def check(self, cfg) -> None:
        """Raise ConfigError (naming ``method.<key>``) for values fine one by one but not together,
        here or with the other sections of ``cfg``."""

    @property
    def bank_sync_steps(self) -> int:
        """Steps between pushes of per-sample state to the BankServer actor; 0: no server."""
        return 0
