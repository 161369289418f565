"""``raycl doctor``: what this machine and its Ray cluster can run, measured (``run``: the plan and
its table; ``checks``: each measurement, run in one process)."""
