"""The names of ``raycl demo``'s runs: each call a new ``demo-<time>`` whose folder it reserves, or
with ``--resume`` the newest demo run that has a checkpoint."""

from __future__ import annotations

import os
import time

from raycl.errors import ConfigError
from raycl.train.checkpoint import registered_checkpoints
from raycl.train.storage import run_dir


def demo_run_name(cfg, resume: bool) -> tuple[str, str]:
    """(run name, the line that says which): the newest ``demo-*`` run with a checkpoint when
    ``resume``, else a new ``demo-<time>`` whose folder this call creates, so two demos started at
    once never share one."""

    root = os.path.dirname(run_dir(cfg) or "") or None
    if resume:
        folder = root or ""
        names = os.listdir(folder) if folder and os.path.isdir(folder) else []
        runs = sorted(
            (n for n in names if n.startswith("demo-") and registered_checkpoints(os.path.join(folder, n))),
            key=lambda n: os.path.getmtime(os.path.join(folder, n)),
        )
        if not runs:
            where = cfg.run.storage_path
            raise ConfigError(f"--resume: no demo run with a checkpoint under run.storage_path {where!r}")
        return runs[-1], f"demo: resuming run {runs[-1]!r} in {root}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"demo-{stamp}"
    if root is not None:  # local storage: reserve the folder; a demo started in the same second takes -2, -3, ...
        for n in range(2, 1000):
            try:
                os.makedirs(os.path.join(root, name))
                break
            except FileExistsError:
                name = f"demo-{stamp}-{n}"
    where = root or cfg.run.storage_path
    return name, f"demo: new run {name!r} in {where} (continue it later with: raycl demo --resume)"
