"""``raycl doctor``: is this node (or every node of a cluster) healthy, and is raycl fast on it?

One Ray task per node (on a cluster, per node with GPUs; pinned there, holding its GPUs) runs the
checks of ``raycl.doctor.checks`` in one process and returns rows; the driver adds what Ray
sees, prints one table and writes ``doctor.json`` and ``doctor.md`` to ``--out``. Each figure comes
with a bare reference measured in the same process. ``--quick`` sizes every check to fit in about
8 minutes on one GPU including start-up; on a CPU-only node the CPU branches run, smaller, and the
GPU-only rows say that they were skipped and why.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raycl.bench.step import ARCHS
from raycl.config import apply_overrides, load_config
from raycl.doctor import checks
from raycl.files import write_atomic
from raycl.train import console
from raycl.train.trainer import init_ray

CPU_STEP = ["model.backbone=resnet18", "model.stem=small", "model.width=16", "data.image_size=32",
            "data.channels=3", "data.batch_size=64", "model.proj_hidden_dim=128", "model.proj_out_dim=32"]  # fmt: skip
GPU_ONLY = "needs a GPU (the CPU branch of this path is covered by the test suite)"


def plan(quick: bool, gpus: int) -> dict[str, Any]:
    """What to measure, and how big, on a node with ``gpus`` GPUs."""
    if gpus:
        r18 = ARCHS["resnet18_cifar"] + ["distributed.use_gpu=true"]
        r50 = ARCHS["resnet50"] + ["distributed.use_gpu=true"]
        bf16, cl = "distributed.precision=bf16", "distributed.channels_last=true"
        variants = [
            ("ResNet-18 32 px b512, fp32, ZeRO-1, SGD", r18 + ["distributed.zero_stage=1", "optim.name=sgd"]),
            ("ResNet-18 32 px b512, bf16, ZeRO-0, LARS", r18 + [bf16, "distributed.zero_stage=0", "optim.name=lars"]),
            ("ResNet-18 32 px b512, bf16, ZeRO-1, LARS", r18 + [bf16, "distributed.zero_stage=1", "optim.name=lars"]),
            ("ResNet-18 32 px b512, bf16 + channels_last, ZeRO-2, LARS",
             r18 + [bf16, cl, "distributed.zero_stage=2", "optim.name=lars"]),
            ("ResNet-50 224 px b128, bf16 + channels_last, ZeRO-1, LARS",
             r50 + [bf16, cl, "distributed.zero_stage=1", "optim.name=lars"]),
        ]  # fmt: skip
        if not quick:
            variants += [
                ("ResNet-50 224 px b128, bf16 + channels_last, ZeRO-2, LARS",
                 r50 + [bf16, cl, "distributed.zero_stage=2", "optim.name=lars"]),
                ("ResNet-50 224 px b128, bf16 + channels_last, ZeRO-1, SGD",
                 r50 + [bf16, cl, "distributed.zero_stage=1", "optim.name=sgd"]),
            ]  # fmt: skip
        return {
            "variants": variants, "skipped_variants": [], "steps": 10 if quick else 30, "repeats": 2 if quick else 3,
            "bank": {"n": 1_281_167, "clusters": 10_000, "negatives": 16_384, "batch": 256, "steps": 5},
            "decode": (1024 if quick else 4096, 224), "loader": (r18, 8192 if quick else 32768),
            "collectives": ("nccl", gpus, 256 << 20, 10 if quick else 50) if gpus > 1 else None,
        }  # fmt: skip
    variants = [
        ("ResNet-18 32 px w16 b64, fp32, ZeRO-0, SGD", CPU_STEP + ["distributed.zero_stage=0", "optim.name=sgd"]),
        ("ResNet-18 32 px w16 b64, fp32, ZeRO-1, LARS", CPU_STEP + ["distributed.zero_stage=1", "optim.name=lars"]),
        ("ResNet-18 32 px w16 b64, fp32, ZeRO-2, LARS", CPU_STEP + ["distributed.zero_stage=2", "optim.name=lars"]),
    ]
    skipped_variants = [
        ("bf16 and channels_last (ResNet-18 32 px)", GPU_ONLY),
        ("ResNet-50 224 px", "--quick on a CPU: seconds per step (run without --quick)" if quick else None),
    ]
    if not quick:
        variants.append(("ResNet-50 224 px b8, fp32, ZeRO-1, LARS", ARCHS["resnet50"] + [
            "data.batch_size=8", "distributed.zero_stage=1", "optim.name=lars"]))  # fmt: skip
    return {
        "variants": variants, "skipped_variants": [(s, why) for s, why in skipped_variants if why],
        "steps": 3 if quick else 10, "repeats": 1 if quick else 3,
        "bank": {"n": 50_000 if quick else 200_000, "clusters": 500 if quick else 2_000,
                 "negatives": 1_024 if quick else 4_096, "batch": 64, "steps": 3 if quick else 5},
        "decode": (128 if quick else 1024, 224), "loader": (CPU_STEP, 1024 if quick else 4096),
        "collectives": ("gloo", 2, (16 if quick else 64) << 20, 5 if quick else 20),
    }  # fmt: skip


def guarded(check: str, setting: str, fn, *args) -> list[dict]:
    """The rows of ``fn``, or one failed row naming the check, its setting and the error."""
    try:
        out = fn(*args)
        return out if isinstance(out, list) else [out]
    except Exception as e:  # a sick node is what the doctor reports on
        why = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
        return [checks.row(check, setting, status="failed", note=why)]


def node_checks(base: dict, quick: bool) -> list[dict]:
    """Every check on this node, in this process."""
    import torch

    gpus = torch.cuda.device_count()
    p = plan(quick, gpus)
    device = torch.device("cuda:0" if gpus else "cpu")
    rows = checks.versions()
    coll = p["collectives"]
    rows += guarded("collectives", "", checks.collectives, *coll) if coll else [checks.skipped(
        "all-reduce / all-gather bus bandwidth", "nccl", "needs 2+ GPUs on a node (this node: 1)")]  # fmt: skip
    checks.single_process_group(device)
    step = "step vs bare PyTorch"
    steps = [row for label, overrides in p["variants"] for row in guarded(
        step, label, checks.step_row, base, label, overrides, device, p["steps"], p["repeats"])]  # fmt: skip
    rows += steps + [checks.skipped("step vs bare PyTorch", s, why) for s, why in p["skipped_variants"]]
    rows += guarded("bank step", "", checks.bank_row, p["bank"], device)
    # what decode must keep up with: the 224 px step (the size decoded), else the first one measured
    measured = [r for r in steps if r["status"] != "failed"]
    eats = next((r["value"] for r in measured if "224 px" in r["setting"]), measured[0]["value"] if measured else None)
    rows += guarded("decode", "", checks.decode_rows, *p["decode"], device, eats)
    loader_base, loader_rows = p["loader"]
    rows += guarded(
        "loader", "", checks.loader_row, apply_overrides(base, loader_base), loader_rows, device, p["steps"]
    )
    return rows


def target_nodes() -> list[dict]:
    """Alive nodes; on a cluster with GPUs, the GPU nodes only (the checks that matter need them)."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    with_gpus = [n for n in alive if n.get("Resources", {}).get("GPU", 0) > 0]
    return with_gpus or alive


def doctor(quick: bool = False, address: str | None = None, overrides: list[str] | None = None) -> list[dict]:
    fixed = ["method.name=simclr", "distributed.workers=1", "run.log_every=1000"]
    base = load_config(None, fixed + list(overrides or [])).to_dict()
    owned = init_ray(address)
    console.drop_forwarded_noise()  # the tasks' DeepSpeed start-up lines, as a run's console drops them
    try:
        remote = ray.remote(node_checks)
        tasks, seen = [], []
        for node in target_nodes():
            gpus = int(node["Resources"].get("GPU", 0))
            strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            tasks.append(remote.options(scheduling_strategy=strategy, num_gpus=gpus, num_cpus=1).remote(base, quick))
            seen.append(checks.row("GPUs seen by Ray", node.get("NodeManagerAddress", ""), gpus, "GPUs",
                                   status="info"))  # fmt: skip
        rows = []
        for node_rows, ray_row in zip(ray.get(tasks), seen):
            host = node_rows[0]["node"]
            rows += [dict(r, node=host) for r in node_rows[:2] + [ray_row] + node_rows[2:]]
        return rows
    finally:
        if owned:
            ray.shutdown()


def _fmt(value) -> str:
    return "" if value is None else f"{value:,.2f}" if isinstance(value, float) else str(value)


def table(rows: list[dict], markdown: bool = False) -> str:
    """One line per row: check, setting, value, bare reference, ratio, status, note."""
    head = ["node", "check", "setting", "value", "reference", "ratio", "status", "note"]
    cells = [[r.get("node", ""), r["check"], r["setting"], f"{_fmt(r['value'])} {r['unit']}".strip(),
              _fmt(r["reference"]), _fmt(r["ratio"]), r["status"], r["note"]] for r in rows]  # fmt: skip
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(c.replace("|", "\\|") for c in cell) + " |" for cell in cells])
    widths = [max(len(x) for x in col) for col in zip(head, *cells)]
    widths[-1] = 0  # the note runs on
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in [head, *cells])


def write(rows: list[dict], out: str, quick: bool) -> list[str]:
    """``doctor.json`` and ``doctor.md`` in ``out`` (created), each written whole then moved."""
    os.makedirs(out, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    texts = {
        "doctor.json": json.dumps({"when": stamp, "quick": quick, "rows": rows}, indent=1),
        "doctor.md": f"# raycl doctor{' --quick' if quick else ''}, {stamp}\n\n{table(rows, markdown=True)}\n",
    }
    paths = []
    for name, text in texts.items():
        path = os.path.join(out, name)
        write_atomic(path, text)
        paths.append(path)
    return paths
