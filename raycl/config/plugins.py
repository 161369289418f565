"""How the config finds each method's ``method:`` model without importing the methods: through the
``raycl.methods`` entry-point group, where raycl's own methods are registered beside any other
package's (pyproject.toml). ``raycl.methods`` builds its registry from the same group and shares its
tables here, so a method is loaded once per process."""

from __future__ import annotations

from typing import Any

from raycl.config.sections import MethodConfig
from raycl.entry_points import load_group
from raycl.errors import ConfigError

ENTRY_POINTS = "raycl.methods"

# method name -> its Method class (``Config`` is its model); names whose entry point broke -> why
METHODS: dict[str, Any] = {}
BROKEN: dict[str, str] = {}
_loading = False  # loading the first method imports raycl.methods, which asks for these tables


def methods() -> tuple[dict[str, Any], dict[str, str]]:
    """(registered methods, entry points that gave no usable method, with why), loaded on first use."""
    if _loading:
        return METHODS, BROKEN  # the same dicts, filled as the group loads
    if not METHODS and not BROKEN:
        load()
    if not METHODS:
        raise ConfigError(
            f"method.name: no method is registered in the {ENTRY_POINTS!r} entry-point group; raycl's own "
            "methods are entry points of its installed package: install it (pip install -e . in a checkout)"
        )
    return METHODS, BROKEN


def load() -> None:
    """Every method of the entry-point group; an entry point that fails is kept in ``BROKEN`` (said when
    a config names it), never allowed to break the others."""
    global _loading
    _loading = True
    try:
        load_group(ENTRY_POINTS, unusable, METHODS, BROKEN)
    finally:
        _loading = False


def unusable(cls: Any, name: str) -> str | None:
    """Why ``cls`` cannot be the method ``name`` (None: it can). What the config needs of a method is
    its name and its ``Config`` model; the rest of ``raycl.methods.Method`` comes with subclassing it."""
    model = getattr(cls, "Config", None)
    is_method = isinstance(cls, type) and isinstance(model, type) and issubclass(model, MethodConfig)
    if not is_method or getattr(cls, "name", None) != name or not callable(getattr(cls, "views", None)):
        return f"is not a raycl Method subclass named {name!r}"
    stale = [a for a in ("augmentation", "autoaugment") if a in vars(cls)]
    if stale:  # read by an older raycl: ignored now, it would silently train on other views
        return (
            f"sets {stale[0]!r}, which raycl no longer reads; declare the method's views with "
            "`def views(self) -> list[View]` instead"
        )
    return None
