"""What evaluation in this process prints: progress lines (feature extraction, linear epochs) and the
table of an encoder against its floors."""

from __future__ import annotations

import time
from collections.abc import Callable

from raycl.log import get as get_logger
from raycl.progress import fmt_duration

log = get_logger(__name__)


class Ticker:
    """A ``progress(done, total)`` callback that says ``eval: <what> done/total <unit> | rate | ETA``
    (to raycl's logger) at most every ``every_s`` seconds, and once at the end of work that took longer."""

    def __init__(self, what: str, unit: str, every_s: float = 5.0, say: Callable[[str], None] = log.info):
        self.what, self.unit, self.every_s, self.say = what, unit, every_s, say
        self.t0 = self.last = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self.last < self.every_s and (done < total or now - self.t0 < self.every_s):
            return  # work shorter than one interval prints nothing
        self.last = now
        rate = done / max(now - self.t0, 1e-9)
        eta = (total - done) / rate if rate > 0 else 0.0
        rate_text = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"  # a logreg fit: 0.31 values of C/s
        self.say(
            f"eval: {self.what} {done:,}/{total:,} {self.unit} | {rate_text} {self.unit}/s | "
            f"{'done in ' + fmt_duration(now - self.t0) if done >= total else 'ETA ' + fmt_duration(eta)}"
        )


ROWS = (("encoder", ""), ("random init", "random_init_"), ("raw pixels", "pixels_"))


COLUMNS = (
    ("knn_top1", "kNN top-1"),
    ("linear_probe_top1", "linear probe"),
    ("logreg_top1", "logreg top-1"),
    ("effective_rank", "effective rank"),
)


def floors_table(result: dict) -> str:
    """kNN / linear (or logistic-regression) top-1 and the effective rank of the encoder and of the
    floors it is compared with, one row each."""
    columns = [(key, title) for key, title in COLUMNS if key in result]
    known = {key for key, _ in COLUMNS} | {"logreg_val_top1"}  # the C-choosing split's score: no column
    columns += [
        (key, key.removesuffix("_top1").replace("_", " ") + " top-1")
        for key in result
        if key.endswith("_top1") and key not in known and not key.startswith(("random_init_", "pixels_"))
    ]
    widths = [len(title) + 1 for _, title in columns]
    lines = [f"{'':<12}" + "".join(f" {title:>{w}}" for (_, title), w in zip(columns, widths))]
    for label, prefix in ROWS:
        values = [result.get(prefix + key) for key, _ in columns]
        if all(v is None for v in values):
            continue
        cells = (_fmt(v, key) for v, (key, _) in zip(values, columns))
        lines.append(f"{label:<12}" + "".join(f" {cell:>{w}}" for cell, w in zip(cells, widths)))
    won = [
        f"{title} {result[f'pixels_{key[:-5]}_preprocessing']}"
        for key, title in columns
        if f"pixels_{key[:-5]}_preprocessing" in result
    ]
    if won:  # the floor is the best of three plain preprocessings: say which one each figure is
        lines.append(f"raw pixels: the best of stored, mean-centred and standardised values ({', '.join(won)})")
    return "\n".join(lines)


def _fmt(v, key: str) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if key == "effective_rank" else f"{v:.4f}"
