"""The quality table's arithmetic: per method, mean and spread over the seeds against both floors; the
papers' orderings judged on those means; the lines ``raycl bench quality`` and the notebook print."""

from __future__ import annotations

import math
import statistics
from typing import Any

METRICS = ("knn_top1", "linear_probe_top1")

# The papers' orderings a table of these rows can test, each row at least the next: TCL's (supervised TCL,
# SupCon, cross-entropy), CLSA's over its MoCo v2 baseline, InterCLR's over its intra-image branch alone.
ORDERINGS = [("tcl", "supcon", "supervised_ce"), ("clsa", "moco_v2"), ("interclr", "interclr_intra")]


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(state: dict, methods: list[str], seeds: list[int]) -> list[dict]:
    """Per method, then per floor: mean and sample standard deviation over the seeds of kNN and linear
    top-1; a method's ``beats_floors``: its means above both floors' means on both protocols."""
    per_seed = [state["floors"][str(s)] for s in seeds]
    floors = [
        summary_row(label, [{m: f.get(f"{key}{m}") for m in (*METRICS, "effective_rank")} for f in per_seed])
        for label, key in (("random init", "random_init_"), ("raw pixels", "pixels_"))
        if all(f.get(f"{key}knn_top1") is not None for f in per_seed)
    ]
    rows = []
    for name in methods:
        row = summary_row(name, [r for r in state["runs"] if r["method"] == name and r["seed"] in seeds])
        row["beats_floors"] = all(
            f"{m}_mean" in floor and row[f"{m}_mean"] > floor[f"{m}_mean"] for floor in floors for m in METRICS
        )
        rows.append(row)
    return rows + floors


def orderings(summary: list[dict]) -> list[dict]:
    """Each of ``ORDERINGS`` whose rows are all in ``summary``, per protocol: the differences of the
    means of each adjacent pair, whether every one is >= 0 (``holds``), and whether every one is above
    twice its standard error sqrt(sd_a^2/n_a + sd_b^2/n_b) (``clear``; None under two seeds a row)."""
    rows = {row["method"]: row for row in summary}
    verdicts = []
    for chain in ORDERINGS:
        if not all(rows.get(name, {}).get("seeds") for name in chain):
            continue
        pairs = [(rows[a], rows[b]) for a, b in zip(chain, chain[1:])]
        verdict: dict[str, Any] = {"ordering": " >= ".join(chain)}
        for metric in METRICS:
            gaps = [a[f"{metric}_mean"] - b[f"{metric}_mean"] for a, b in pairs]
            errors = [math.hypot(standard_error(a, metric), standard_error(b, metric)) for a, b in pairs]
            spread = all(a["seeds"] > 1 and b["seeds"] > 1 for a, b in pairs)
            verdict[metric] = {
                "differences": [round(g, 4) for g in gaps],
                "holds": all(g >= 0 for g in gaps),
                "clear": all(g > 2 * e for g, e in zip(gaps, errors)) if spread else None,
            }
        verdicts.append(verdict)
    return verdicts


def standard_error(row: dict, metric: str) -> float:
    return row[f"{metric}_sd"] / math.sqrt(row["seeds"])


def format_orderings(verdicts: list[dict]) -> str:
    """One line per ordering: 'shown' (every gap above 2 standard errors), 'by the means' (ordered means,
    within the seeds' spread), 'not shown' (a gap reversed); the differences of the means."""

    def word(check: dict) -> str:
        if not check["holds"]:
            return "not shown"
        return {True: "shown", False: "by the means only", None: "by the means (one seed)"}[check["clear"]]

    return "\n".join(
        f"{v['ordering']}: "
        + "; ".join(
            f"{label} {word(v[m])} ({', '.join(f'{d:+.4f}' for d in v[m]['differences'])})"
            for m, label in zip(METRICS, ("kNN", "linear"))
        )
        for v in verdicts
    )


def summary_row(label: str, runs: list[dict]) -> dict:
    row: dict[str, Any] = {"method": label, "seeds": len(runs)}
    for metric in (*METRICS, "images_per_s", "effective_rank"):  # a run may lack the rank: mean of those with it
        values = [r[metric] for r in runs if r.get(metric) is not None]
        if values:
            row[f"{metric}_mean"], row[f"{metric}_sd"] = (round(v, 4) for v in mean_sd(values))
    return row


RUN_COLUMNS = ("method", "seed", "knn_top1", "linear_probe_top1", "images_per_s", "wall_s")


def format_runs(rows: list[dict], header: bool = True) -> str:
    fmt = "{:<14} {:>4} {:>9} {:>12} {:>13} {:>8}"
    lines = [fmt.format(*RUN_COLUMNS)] if header else []
    return "\n".join(lines + [fmt.format(*(r[c] for c in RUN_COLUMNS)) for r in rows])


def format_summary(rows: list[dict]) -> str:
    """The table: mean +- sd over the seeds; '*' marks a method above both floors on both protocols;
    rank: the held-out features' effective rank (mean)."""

    def cell(row, metric):
        if f"{metric}_mean" not in row:
            return "-"
        return f"{row[metric + '_mean']:.4f} +- {row[metric + '_sd']:.4f}"

    fmt = "{:<16} {:>5} {:>18} {:>18} {:>8} {:>9}"
    lines = [fmt.format("method", "seeds", "kNN top-1", "linear probe", "rank", "images/s")]
    for row in rows:
        speed = f"{row['images_per_s_mean']:.0f}" if "images_per_s_mean" in row else "-"
        rank = f"{row['effective_rank_mean']:.1f}" if "effective_rank_mean" in row else "-"
        mark = " *" if row.get("beats_floors") else ""
        knn, linear = cell(row, "knn_top1"), cell(row, "linear_probe_top1")
        lines.append(fmt.format(row["method"] + mark, row["seeds"], knn, linear, rank, speed))
    return "\n".join(lines)
