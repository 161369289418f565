"""Reading a config: a YAML file (or ``recipe:NAME``) and overrides into one validated ``Config``;
the API's door for a config given as an object or a dict; a checkpoint's stored config."""

from __future__ import annotations

from raycl.config.model import Config, from_dict, from_user
from raycl.config.overrides import apply_overrides, read_yaml
from raycl.config.paths import _method_model, resolve_paths
from raycl.errors import ConfigError


def load_config(path: str | None = None, overrides: list[str] | None = None) -> Config:
    raw = read_yaml(path) if path is not None else {}
    return from_user(apply_overrides(raw, overrides or []))


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
