"""The fields of a config that name a place, declared once: made absolute on the driver (Ray Train
workers run in directories of their own, and a person types a path relative to the shell they are
in) and, for those raycl reads, found to exist before any worker starts."""

from __future__ import annotations

import copy
import os
from typing import Any

import fsspec

from raycl.config import plugins
from raycl.config.sections import MethodConfig
from raycl.errors import ConfigError

# (section, key, read): read fields must exist when set; the others are where raycl writes.
PATH_FIELDS = (
    ("data", "path", True),
    ("data", "eval_path", True),
    ("data", "rows", True),
    ("run", "storage_path", False),
    ("run", "log_dir", False),
)


def local_path(url: str) -> str:
    """``url`` made absolute against this process's working directory, ``~`` expanded; a URL with a
    scheme (``s3://``, ``memory://``, ``file://``) is left as it is."""
    if "://" in url:
        return url
    return os.path.abspath(os.path.expanduser(url))


def _method_model(raw_method: Any) -> type[MethodConfig]:
    name = raw_method.get("name", MethodConfig.model_fields["name"].default) if isinstance(raw_method, dict) else None
    registry = plugins.methods()[0]
    return registry[name].Config if isinstance(name, str) and name in registry else MethodConfig


def path_fields(raw_method: Any = None, read: bool | None = None) -> list[tuple[str, str]]:
    """(section, key) of every field that names a place (``read``: only those raycl reads, or only
    those it writes): ``PATH_FIELDS`` and the method's own (``MethodConfig.path_fields``, read)."""
    fields = [*PATH_FIELDS, *(("method", key, True) for key in _method_model(raw_method).path_fields)]
    return [(section, key) for section, key, reads in fields if read is None or reads == read]


def resolve_paths(raw: dict) -> dict:
    """A copy of the raw sections with every path field made absolute (``local_path``)."""
    out = copy.deepcopy(raw)
    for section, key in path_fields(out.get("method")):
        node = out.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), str) and node[key]:
            node[key] = local_path(node[key])
    return out


def resolved(cfg):
    """``cfg`` (a validated Config) with every path field made absolute, the defaults included
    (``run.storage_path``): ``resolve_paths`` for a config object."""
    for section, key in path_fields(cfg.method.model_dump()):
        value = getattr(getattr(cfg, section), key)
        if value:
            cfg = cfg.replace(section, **{key: local_path(value)})
    return cfg


def check_paths(cfg) -> None:
    """Every place the config reads from exists (one ConfigError naming the field, else)."""
    for section, key in path_fields(cfg.method.model_dump(), read=True):
        url = getattr(getattr(cfg, section), key)
        if url:
            require_exists(f"{section}.{key}", url)


def require_exists(field_name: str, url: str) -> None:
    try:
        fs, p = fsspec.core.url_to_fs(url)
        exists = fs.exists(p)
    except Exception as e:  # an unknown protocol, a malformed URL
        raise ConfigError(f"{field_name}: cannot open {url!r}: {e}") from None
    if not exists:
        raise ConfigError(f"{field_name}: {url!r} does not exist")
