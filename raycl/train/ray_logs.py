"""The one place raycl touches Ray's private log forwarding. Ray prints every worker's forwarded
output on the driver through one handler of a private dispatcher (``ray._private.ray_logging``), and
offers no public hook to replace it; raycl's console does (``raycl.train.console``). Should a Ray
upgrade move any of this, ``problems()`` names what moved (a test fails loudly on it) and raycl leaves
Ray's own printing in place instead of breaking."""

from __future__ import annotations

from collections.abc import Callable

PRINTER = "ray_print_logs"  # the name Ray gives its printing handler (ray/_private/worker.py)


def _dispatcher():
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher  # private: may move
    except ImportError:
        return None
    return global_worker_stdstream_dispatcher


def printer() -> Callable | None:
    """The handler that prints forwarded worker output now (Ray's, or what replaced it)."""
    d = _dispatcher()
    if d is None:
        return None
    with d._lock:
        found = [handle for name, handle in d.handlers if name == PRINTER]
    return found[0] if found else None


def replace_printer(new: Callable[[dict], None]) -> Callable | None:
    """Put ``new`` in the printer's place; returns the one it replaced (to put back), or None when
    there is none (``ray.init(log_to_driver=False)``, or Ray moved it): then nothing changes."""
    old = printer()
    if old is None:
        return None
    d = _dispatcher()
    d.remove_handler(PRINTER)
    d.add_handler(PRINTER, new)
    return old


def autoscaler_events(lines: list[str]) -> list[str]:
    """The autoscaler's events among its periodic status dumps (what Ray itself prints of them)."""
    try:
        from ray._private.worker import filter_autoscaler_events  # private: may move
    except ImportError:
        return lines
    return list(filter_autoscaler_events(lines))


def problems() -> list[str]:
    """What of the above is not where raycl expects it in the installed Ray (empty: all is)."""
    d = _dispatcher()
    if d is None:
        return ["ray._private.ray_logging.global_worker_stdstream_dispatcher is gone"]
    out = [
        f"the dispatcher has no {a!r}"
        for a in ("_lock", "handlers", "add_handler", "remove_handler", "emit")
        if not hasattr(d, a)
    ]
    try:
        from ray._private.worker import filter_autoscaler_events  # noqa: F401
    except ImportError:
        out.append("ray._private.worker.filter_autoscaler_events is gone")
    return out
