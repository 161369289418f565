"""``raycl bench quality``: every method for the same small budget on the built-in digits, one table.

Each method runs the real path (``raycl train`` on Ray + DeepSpeed, then kNN and a linear probe on the
frozen encoder) from the same base config; ``PRESETS`` holds the few method keys the digits need
(bank sizes, queue length, strong-view size for 28 px images). Two floors close the table, measured on
the same rows by the same protocol: the encoder at random init, and the raw pixels.
"""

from __future__ import annotations

import time

from raycl import api
from raycl.config import apply_overrides, from_dict
from raycl.errors import ConfigError
from raycl.methods import REGISTRY

# The memory/queue methods train at their papers' lr (0.03 at batch 256, wd 1e-4: MoCo v2, CLSA, InterCLR);
# the demo's 0.3 is SimCLR's. Before session 5 DeepSpeed clipped every gradient norm at 1.0, which hid the
# difference: unclipped, the three fell below their random-init kNN at 0.3 (0.468, 0.520, 0.443 vs 0.524).
PAPER_LR = ["optim.base_lr=0.03", "optim.weight_decay=1e-4"]
PRESETS: dict[str, list[str]] = {
    "simclr": [],
    # Short schedules: a short queue (stale keys of a random encoder otherwise dominate the negatives) and
    # shuffle-BN (without it the query finds its key through per-worker BN statistics).
    "moco_v2": [
        "method.queue_size=256",
        "method.temperature=0.1",
        "method.key_momentum=0.99",
        "method.shuffle_bn=true",
        *PAPER_LR,
    ],
    "clsa": [
        "method.queue_size=256",
        "method.temperature=0.1",
        "method.key_momentum=0.99",
        "method.shuffle_bn=true",
        "method.strong_sizes=[16]",
        *PAPER_LR,
    ],
    "supcon": ["method.temperature=0.1"],
    "tcl": ["method.supervised=true", "method.k1=4000", "method.k2=1", "method.temperature=0.1"],
    "simclic": ["method.perturbation=noise", "method.noise_eps=0.5"],
    "interclr": [
        "method.bank_size=4000",
        "method.num_clusters=100",
        "method.num_negatives=1024",
        "method.temperature=0.1",
        *PAPER_LR,
    ],
    "imclr": ["method.concat_k=2"],
    "supervised_ce": [],
}


def quality(base: dict, methods: list[str], address: str | None = None, log=print) -> list[dict]:

    rows = []
    for name in methods:
        if name not in PRESETS:
            raise ConfigError(f"bench quality: no preset for method {name!r}; known: {', '.join(PRESETS)}")
        cfg = from_dict(
            apply_overrides(for_method(base, name), [f"run.name=quality-{name}-{int(time.time())}", *PRESETS[name]])
        )
        t0 = time.perf_counter()
        metrics = api.train(cfg, address)
        ev = api.evaluate(metrics["checkpoint"], with_floors=False)  # the floors are the same rows: once below
        rows.append(
            {
                "method": name,
                "knn_top1": round(ev["knn_top1"], 4),
                "linear_top1": round(ev["linear_top1"], 4),
                "images_per_s": round(metrics["images_per_s"], 1),
                "wall_s": round(time.perf_counter() - t0, 1),
            }
        )
        log(format_table(rows[-1:], header=len(rows) == 1))
    floors = api.floors(from_dict(base), linear=True)
    for label, key in (("random init", "random_init_"), ("raw pixels", "pixels_")):
        if f"{key}knn_top1" in floors:
            linear = floors.get(f"{key}linear_top1")
            rows.append({"method": label, "knn_top1": round(floors[f"{key}knn_top1"], 4),
                         "linear_top1": None if linear is None else round(linear, 4),
                         "images_per_s": None, "wall_s": None})  # fmt: skip
    return rows


def for_method(base: dict, name: str) -> dict:
    """``base`` with ``method.name`` set to ``name``, keeping only the base's method keys that
    method has (the demo's temperature, say; never another method's keys)."""

    own = REGISTRY[name].Config.model_fields
    method = {k: v for k, v in (base.get("method") or {}).items() if k in own and k != "name"}
    return {**base, "method": {"name": name, **method}}


def format_table(rows: list[dict], header: bool = True) -> str:
    cols = ("method", "knn_top1", "linear_top1", "images_per_s", "wall_s")
    fmt = "{:<14} {:>9} {:>12} {:>13} {:>8}"
    lines = [fmt.format(*cols)] if header else []
    lines += [fmt.format(*("-" if r[c] is None else r[c] for c in cols)) for r in rows]
    return "\n".join(lines)
