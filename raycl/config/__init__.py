"""Typed, validated configuration.

A config is seven sections, each a strict pydantic model (``raycl.fields.Section``); the ``method``
section is the model of the method it names (``Method.Config``, in the method's own file), so a key
of another method is refused as unknown. ``load_config`` reads YAML, applies ``key.sub=value``
overrides and validates everything on the driver, before any Ray worker starts, so a typo costs one
clear error instead of a cluster allocation. ``schema()`` is the JSON Schema of the whole file.
"""

from raycl.config.load import ensure_config, load_config, stored_config
from raycl.config.model import SECTIONS, Config, check_across, from_dict, from_user, keeps_batch, method_section, schema
from raycl.config.overrides import apply_overrides, read_yaml
from raycl.config.paths import PATH_FIELDS, check_paths, local_path, path_fields, resolve_paths
from raycl.config.sections import (
    LOGGERS,
    DataConfig,
    DistributedConfig,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
)
from raycl.fields import MAX_CLASSES

__all__ = [
    "LOGGERS",
    "MAX_CLASSES",
    "PATH_FIELDS",
    "SECTIONS",
    "Config",
    "DataConfig",
    "DistributedConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "apply_overrides",
    "check_across",
    "check_paths",
    "ensure_config",
    "from_dict",
    "from_user",
    "keeps_batch",
    "load_config",
    "local_path",
    "method_section",
    "path_fields",
    "read_yaml",
    "resolve_paths",
    "schema",
    "stored_config",
]
