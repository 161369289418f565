"""A worker's resident memory, read from Linux's /proc (the figures ``data/peak_rss_mb`` and
``data/rss_rise_mb`` each epoch reports)."""

from __future__ import annotations


def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            return next(float(line.split()[1]) / 1024.0 for line in f if line.startswith(field + ":"))
    except (OSError, StopIteration, ValueError):
        return None


def reset_peak_rss() -> float:
    """Start a new peak-RSS window (Linux: ``5`` > /proc/self/clear_refs resets VmHWM) so an epoch's
    peak is not the high-water mark of engine set-up; returns the RSS now, in MB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:  # no procfs or not allowed: the peak stays the process's lifetime peak
        pass
    now = _proc_status_mb("VmRSS")
    return peak_rss_mb() if now is None else now


def peak_rss_mb() -> float:
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    import resource  # not on every platform; only needed without procfs

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
