"""BankServer: the parameter-server side of the memory bank, a Ray actor.

Workers push their shard of the bank (rows, cluster labels) with the centroids every
``method.bank_sync_every`` steps; a push is fire-and-forget (a worker skips a push while its last
one is still in flight, so the training step never waits on the server). When every shard of a
step has arrived the server assembles the whole bank, writes it atomically to
``<run dir>/bank_server/snapshot-<step>.pt`` (keeping the last 3) and serves it:
cluster sizes, label churn per step, nearest neighbours of an index, checksums — to a driver or a
notebook while training runs (``raycl.api.bank_server(run_name)``).

Restarts: the actor is created with ``max_restarts=-1`` and its methods with ``max_task_retries=-1``;
a restarted server reloads its newest snapshot from disk, and pushes in flight are retried.
Workers restore from their checkpoint (``method_state.pt``), not from the server: the bank must
match the model weights it was checkpointed with. The server is for live inspection and survives
its own failures without losing a completed snapshot.
"""

from __future__ import annotations

import glob
import hashlib
import os
import time

import ray
import torch

from raycl.train.checkpoint import safe_load

KEEP = 3
NAMESPACE = "raycl"  # fixed, so a notebook or another job finds the server by run name


def actor_name(run_name: str) -> str:
    return f"raycl-bank-{run_name}"


def checksum(rows: torch.Tensor, labels: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update(rows.contiguous().cpu().numpy().tobytes())
    h.update(labels.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


@ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0)
class BankServer:
    def __init__(self, directory: str):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.pending: dict[int, dict] = {}
        self.snapshot: dict | None = None
        self.churn: list[tuple[int, float]] = []
        self.pushes = 0
        self.restored: dict | None = None
        files = sorted(glob.glob(os.path.join(directory, "snapshot-*.pt")))
        if files:
            self.snapshot = safe_load(files[-1], "bank snapshot")
            self.churn = self.snapshot.get("churn", [])
            self.restored = {"step": self.snapshot["step"], "checksum": self.checksum(), "file": files[-1]}

    # -- the training side -------------------------------------------------------------------
    def push(self, step: int, rank: int, world: int, size: int, rows, labels, centroids, stats: dict) -> bool:
        """One shard's rows (slot order: global index rank, rank + world, ...) at ``step``."""
        self.pushes += 1
        if self.snapshot is not None and step <= self.snapshot["step"]:
            return False  # a retried or late push of a step already assembled
        part = self.pending.setdefault(step, {})
        part[rank] = (rows, labels, centroids if rank == 0 else None, stats if rank == 0 else None)
        if len(part) < world:
            return False
        full_rows = torch.empty(size, rows.shape[1], dtype=rows.dtype)
        full_labels = torch.empty(size, dtype=labels.dtype)
        for r, (rr, ll, _, _) in part.items():
            full_rows[r::world], full_labels[r::world] = rr, ll
        centroids, stats = part[0][2], part[0][3]
        self.churn.append((step, float(stats.get("churn", 0.0))))
        self.snapshot = {
            "step": step,
            "world": world,
            "rows": full_rows,
            "labels": full_labels,
            "centroids": centroids,
            "stats": stats,
            "churn": self.churn[-10000:],
            "time": time.time(),
        }
        self._write()
        self.pending = {s: p for s, p in self.pending.items() if s > step}
        return True

    def _write(self) -> None:
        assert self.snapshot is not None
        path = os.path.join(self.dir, f"snapshot-{self.snapshot['step']:010d}.pt")
        torch.save(self.snapshot, path + ".tmp")
        os.replace(path + ".tmp", path)
        for old in sorted(glob.glob(os.path.join(self.dir, "snapshot-*.pt")))[:-KEEP]:
            os.remove(old)

    # -- the inspection side -----------------------------------------------------------------
    def step(self) -> int:
        return -1 if self.snapshot is None else int(self.snapshot["step"])

    def get_snapshot(self) -> dict | None:
        return self.snapshot

    def cluster_sizes(self) -> list[int]:
        if self.snapshot is None:
            return []
        k = len(self.snapshot["centroids"])
        return torch.bincount(self.snapshot["labels"], minlength=k).tolist()

    def label_churn(self) -> list[tuple[int, float]]:
        return list(self.churn)

    def neighbours(self, index: int, k: int = 10) -> list[dict]:
        if self.snapshot is None:
            raise RuntimeError("the BankServer has no snapshot yet")
        rows = self.snapshot["rows"]
        if not 0 <= index < len(rows):
            raise IndexError(f"index {index} is outside the bank (0..{len(rows) - 1})")
        sim = rows @ rows[index]
        top = sim.topk(min(k + 1, len(rows))).indices.tolist()
        return [
            {"index": i, "similarity": float(sim[i]), "cluster": int(self.snapshot["labels"][i])}
            for i in top
            if i != index
        ][:k]

    def checksum(self) -> str | None:
        return None if self.snapshot is None else checksum(self.snapshot["rows"], self.snapshot["labels"])

    def stats(self) -> dict:
        sizes = self.cluster_sizes()
        return {
            "step": self.step(),
            "pushes": self.pushes,
            "restored": self.restored,
            "checksum": self.checksum(),
            "clusters": len(sizes),
            "empty": sum(1 for s in sizes if s == 0),
            "largest": max(sizes) if sizes else 0,
            "pid": os.getpid(),
        }


def start(run_name: str, directory: str):
    """Get or create the run's named BankServer (it outlives a worker-group restart)."""
    return BankServer.options(  # type: ignore[attr-defined]  # a @ray.remote class
        name=actor_name(run_name), namespace=NAMESPACE, get_if_exists=True, lifetime="detached"
    ).remote(directory)


def get(run_name: str):
    return ray.get_actor(actor_name(run_name), namespace=NAMESPACE)


class Pusher:
    """Worker side: fire-and-forget pushes, at most one in flight. A push skipped because the previous
    one is still in flight (e.g. the server is restarting) is made up at ``flush``, so the server
    always ends with the run's final bank."""

    def __init__(self, run_name: str, every: int):
        self.every, self.server, self.inflight, self.skipped = every, get(run_name), None, 0
        self.behind = None  # (method, step, stats) of the newest skipped push

    def maybe_push(self, method, step: int, stats: dict, world_rank: int) -> None:
        if self.every <= 0 or step % self.every or (not method.bank.shard.collective and world_rank != 0):
            return
        if self.inflight is not None:
            done, _ = ray.wait([self.inflight], timeout=0)
            if not done:
                self.skipped += 1
                self.behind = (method, step, stats)
                return
        self._push(method, step, stats)

    def _push(self, method, step: int, stats: dict) -> None:
        bank, km = method.bank, method.kmeans
        self.behind = None
        self.inflight = self.server.push.remote(
            step,
            bank.shard.rank,
            bank.shard.world,
            bank.size,
            bank.rows.detach().cpu().clone(),
            km.labels.cpu().clone(),
            km.centroids.cpu().clone(),
            {k: float(v) for k, v in stats.items()},
        )

    def flush(self) -> None:
        if self.inflight is not None:
            ray.get(self.inflight)
        if self.behind is not None:
            self._push(*self.behind)
            ray.get(self.inflight)
