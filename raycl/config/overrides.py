"""YAML in, and ``section.key=value`` overrides on it: plain dicts, before any validation."""

from __future__ import annotations

import copy

import fsspec
import yaml

from raycl.errors import ConfigError

# The sections a config file has (the models are in raycl.config.model).
SECTION_NAMES = ("data", "model", "method", "optim", "distributed", "eval", "run")


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """A copy of ``raw`` with ``section.key=value`` strings applied; values are parsed as YAML scalars
    (``0.1``, ``true``, ``null``). ``raw`` itself is left alone: callers apply several override sets
    to one base (bench quality's presets, sweep trials)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping with sections {', '.join(SECTION_NAMES)}, got {raw!r}")
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
            f"{what} {path!r}: expected a mapping of sections ({', '.join(SECTION_NAMES)}), got a {type(raw).__name__}"
        )
    return raw
