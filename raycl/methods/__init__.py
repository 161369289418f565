"""Methods by name: a config's ``method.name`` picks one from ``REGISTRY``.

raycl's own methods are listed here; a method in another package joins by an entry point in the
``raycl.methods`` group (``name = "package.module:Class"``, a ``Method`` subclass whose ``name`` is
that name), found when this module is first imported in a process, driver and workers alike.
"""

from importlib.metadata import entry_points

from raycl.methods.base import Method, MethodBatch, MethodConfig, View
from raycl.methods.clsa import CLSA
from raycl.methods.imclr import ImCLR, SupervisedCE
from raycl.methods.interclr import InterCLR
from raycl.methods.linear_eval import Finetune, LinearEval
from raycl.methods.moco_v2 import MoCoV2
from raycl.methods.simclic import SimCLIC
from raycl.methods.simclr import SimCLR
from raycl.methods.supcon import SupCon
from raycl.methods.tcl import TCL

ENTRY_POINTS = "raycl.methods"

REGISTRY: dict[str, type[Method]] = {
    m.name: m for m in (SimCLR, MoCoV2, SupCon, TCL, SimCLIC, InterCLR, ImCLR, SupervisedCE, CLSA, LinearEval, Finetune)
}
# Entry points that did not give a usable method: name -> why (said when a config asks for it).
BROKEN: dict[str, str] = {}


def _load_entry_points() -> None:
    for ep in entry_points(group=ENTRY_POINTS):
        if ep.name in REGISTRY:
            BROKEN.setdefault(ep.name, f"entry point {ep.value!r} repeats the name of a method raycl already has")
            continue
        try:
            cls = ep.load()
        except Exception as e:  # a user's package: its import error must not break raycl's own methods
            BROKEN[ep.name] = f"entry point {ep.value!r} does not import ({type(e).__name__}: {e})"
            continue
        if not (isinstance(cls, type) and issubclass(cls, Method)) or cls.name != ep.name:
            BROKEN[ep.name] = f"entry point {ep.value!r} is not a raycl Method subclass named {ep.name!r}"
            continue
        stale = [a for a in ("augmentation", "autoaugment") if a in vars(cls)]
        if stale:  # read by an older raycl: ignored now, it would silently train on other views
            BROKEN[ep.name] = (
                f"entry point {ep.value!r} sets {stale[0]!r}, which raycl no longer reads; "
                "declare the method's views with `def views(self) -> list[View]` instead"
            )
            continue
        REGISTRY[ep.name] = cls


_load_entry_points()


def build_method(cfg, channels: int) -> Method:
    return REGISTRY[cfg.method.name](cfg, channels)


__all__ = ["BROKEN", "ENTRY_POINTS", "REGISTRY", "Method", "MethodBatch", "MethodConfig", "View", "build_method"]
