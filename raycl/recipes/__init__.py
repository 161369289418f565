"""The recipes that ship inside raycl: YAML configs a user names without a path.

``recipe:NAME`` stands for ``raycl/recipes/NAME.yaml`` wherever raycl reads a YAML file (a config, a
linear or fine-tuning recipe, a sweep file), so ``raycl train recipe:demo`` works from any directory
and from an installed wheel. ``raycl recipes`` lists them. Each recipe's first comment lines say what
it reproduces."""

from __future__ import annotations

import importlib.resources
import pathlib

from raycl.errors import ConfigError

PREFIX = "recipe:"


def root() -> pathlib.Path:
    return pathlib.Path(str(importlib.resources.files("raycl") / "recipes"))


def names() -> list[str]:
    """Every recipe, as ``NAME`` in ``recipe:NAME`` (sub-folders with a ``/``), sorted."""
    base = root()
    return sorted(p.relative_to(base).with_suffix("").as_posix() for p in base.rglob("*.yaml"))


def resolve(path: str) -> str:
    """``recipe:NAME`` -> the file's path; anything else is returned as it is."""
    if not path.startswith(PREFIX):
        return path
    name = path[len(PREFIX) :].removesuffix(".yaml")
    if name not in names():
        raise ConfigError(f"unknown recipe {path!r}; `raycl recipes` lists them: {', '.join(names())}")
    return str(root() / f"{name}.yaml")


def summary(name: str) -> str:
    """The recipe's leading comment block, joined into one line."""
    lines = []
    for line in (root() / f"{name}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def markdown() -> str:
    """The recipes as a Markdown table (the docs site's list)."""
    rows = [f"| `recipe:{n}` | {summary(n).replace('|', '/')} |" for n in names()]
    return "\n".join(["| recipe | what it is |", "| --- | --- |", *rows]) + "\n"
