"""The evaluation protocols, by name: the ``raycl.protocols`` entry-point group, where raycl registers
its own (pyproject.toml) beside any other package's. A new protocol is one file and one entry point."""

from __future__ import annotations

from typing import Any

from raycl.entry_points import load_group
from raycl.errors import ConfigError
from raycl.protocols.base import Protocol

ENTRY_POINTS = "raycl.protocols"
PROTOCOLS: dict[str, type[Protocol]] = {}
BROKEN: dict[str, str] = {}


def unusable(cls: Any, name: str) -> str | None:
    if not (isinstance(cls, type) and issubclass(cls, Protocol)) or cls.name != name:
        return f"is not a raycl Protocol subclass named {name!r}"
    if not cls.metrics:
        return "names no metric (Protocol.metrics)"
    return None


def protocols() -> dict[str, type[Protocol]]:
    """Every usable protocol, loaded on first use."""
    if not PROTOCOLS and not BROKEN:
        load_group(ENTRY_POINTS, unusable, PROTOCOLS, BROKEN)
    return PROTOCOLS


def chosen(names, field: str = "--protocol") -> list[Protocol]:
    """The protocols ``names`` (a list, or one comma-separated string), each once, in order; an unknown
    or broken name is one error that lists the registered ones."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    table, out = protocols(), list[Protocol]()
    for name in names:
        name = name.strip()
        if name in BROKEN:
            raise ConfigError(f"{field}: {name!r}: {BROKEN[name]}")
        if name not in table:
            raise ConfigError(f"{field}: {name!r} is not one of {', '.join(sorted(table))}")
        if all(p.name != name for p in out):
            out.append(table[name]())
    if not out:
        raise ConfigError(f"{field}: name at least one of {', '.join(sorted(table))}")
    clashes = _shared_metrics(out)
    if clashes:
        raise ConfigError(f"{field}: protocols {clashes} report the same metric; evaluate them apart")
    return out


def _shared_metrics(chosen_protocols: list[Protocol]) -> str | None:
    seen: dict[str, str] = {}
    for p in chosen_protocols:
        for m in p.metrics:
            if m in seen:
                return f"{seen[m]!r} and {p.name!r} ({m!r})"
            seen[m] = p.name
    return None
