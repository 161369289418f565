"""Loading a plugin group (``raycl.methods``, ``raycl.protocols``): raycl registers its own members
there beside any other package's, in pyproject.toml. One member that fails to import, or is not what
the group holds, is set aside with the reason, never allowed to break the others."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any


def _raycl_first(ep) -> tuple[bool, str]:
    dist = getattr(ep, "dist", None)
    return (dist is None or dist.name != "raycl", ep.name)


def load_group(group: str, unusable: Callable[[Any, str], str | None], found: dict, broken: dict) -> None:
    """Fill ``found`` (name -> loaded object) and ``broken`` (name -> why) from the entry points of
    ``group``; ``unusable(obj, name)`` says why a loaded object cannot be that member (None: it can)."""
    seen: dict[str, str] = {}
    for ep in sorted(entry_points(group=group), key=_raycl_first):  # raycl's own names first
        if seen.get(ep.name) == ep.value:  # the same package found twice on the path
            continue
        seen.setdefault(ep.name, ep.value)
        if ep.name in found or ep.name in broken:
            broken.setdefault(ep.name, f"entry point {ep.value!r} repeats the name of a registered one")
            continue
        try:
            obj = ep.load()
        except Exception as e:  # a user's package: its import error must not break raycl's own members
            broken[ep.name] = f"entry point {ep.value!r} does not import ({type(e).__name__}: {e})"
            continue
        why = unusable(obj, ep.name)
        if why:
            broken[ep.name] = f"entry point {ep.value!r} {why}"
        else:
            found[ep.name] = obj
