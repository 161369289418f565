"""Methods by name: a config's ``method.name`` picks one from ``REGISTRY``."""

from raycl.methods.base import Method, MethodBatch
from raycl.methods.clsa import CLSA
from raycl.methods.imclr import ImCLR, SupervisedCE
from raycl.methods.interclr import InterCLR
from raycl.methods.moco_v2 import MoCoV2
from raycl.methods.simclic import SimCLIC
from raycl.methods.simclr import SimCLR
from raycl.methods.supcon import SupCon
from raycl.methods.tcl import TCL

REGISTRY: dict[str, type[Method]] = {
    m.name: m for m in (SimCLR, MoCoV2, SupCon, TCL, SimCLIC, InterCLR, ImCLR, SupervisedCE, CLSA)
}


def build_method(cfg, channels: int) -> Method:
    return REGISTRY[cfg.method.name](cfg, channels)


__all__ = ["REGISTRY", "Method", "MethodBatch", "build_method"]
