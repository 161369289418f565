"""Methods by name: a config's ``method.name`` picks one from ``REGISTRY``.

Every method joins by an entry point in the ``raycl.methods`` group (``name = "package.module:Class"``,
a ``Method`` subclass whose ``name`` is that name): raycl's own are listed in its pyproject.toml, a
method in another package in that package's. ``raycl.config.plugins`` loads the group once per
process, driver and workers alike, and the registry here is its table.
"""

from collections.abc import Iterator, Mapping

from raycl.config import plugins
from raycl.methods.base import Method, MethodBatch, MethodConfig, View

# raycl's methods, importable from here for a package that builds on one (the registry itself comes
# from the entry points, after these imports)
from raycl.methods.clsa import CLSA
from raycl.methods.imclr import ImCLR, SupervisedCE
from raycl.methods.interclr import InterCLR
from raycl.methods.linear_eval import Finetune, LinearEval
from raycl.methods.moco_v2 import MoCoV2
from raycl.methods.simclic import SimCLIC
from raycl.methods.simclr import SimCLR
from raycl.methods.supcon import SupCon
from raycl.methods.tcl import TCL

ENTRY_POINTS = plugins.ENTRY_POINTS


class _Table(Mapping):
    """One of ``raycl.config.plugins``' tables, loaded from the entry points at its first use, not when
    this package is imported: a worker unpickling a plugin method's config imports that package,
    which imports this one, before the entry points may load it."""

    def __init__(self, which: int):
        self.which = which

    def _table(self) -> dict:
        return plugins.methods()[self.which]

    def __getitem__(self, name: str):
        return self._table()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


REGISTRY: Mapping[str, type[Method]] = _Table(0)
# Entry points that did not give a usable method: name -> why (said when a config asks for it).
BROKEN: Mapping[str, str] = _Table(1)


def build_method(cfg, channels: int) -> Method:
    return REGISTRY[cfg.method.name](cfg, channels)


__all__ = [
    "BROKEN", "CLSA", "ENTRY_POINTS", "REGISTRY", "TCL", "Finetune", "ImCLR", "InterCLR", "LinearEval", "Method",
    "MethodBatch", "MethodConfig", "MoCoV2", "SimCLIC", "SimCLR", "SupCon", "SupervisedCE", "View", "build_method",
]  # fmt: skip
