"""The BankServer actor: assembly of pushed shards, live queries, and faults on a real Ray cluster
(the actor killed mid-run, a training worker killed mid-run, resuming on another worker count)."""
import os
import signal
import threading
import time

import pytest
import torch
import torch.nn.functional as F

from raycl.train.bank_server import BankServer, checksum
from raycl.train.trainer import fit

INTERCLR = ["method.name=interclr", "method.bank_size=256", "method.num_clusters=8", "method.num_negatives=32",
            "distributed.zero_stage=0", "eval.every_epochs=100"]


def wait_for(fn, timeout=120, every=0.2, thread=None):
    t = time.time()
    while time.time() - t < timeout:
        if thread is not None and not thread.is_alive():
            raise RuntimeError("the training run ended before the condition was met")
        out = fn()
        if out:
            return out
        time.sleep(every)
    raise TimeoutError("condition not met")


def test_server_assembles_shards_serves_queries_and_survives_a_kill(ray_cluster, tmp_path):
    import ray

    server = BankServer.remote(str(tmp_path / "srv"))
    rows = F.normalize(torch.randn(11, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    labels = torch.arange(11) % 3
    cent = torch.randn(3, 4)
    for step in (1, 2):
        # shard r holds the global rows r, r + 2, ...; rank 1 arrives first
        assert not ray.get(server.push.remote(step, 1, 2, 11, rows[1::2], labels[1::2], cent, {}))
        assert ray.get(server.push.remote(step, 0, 2, 11, rows[0::2], labels[0::2], cent, {"churn": 0.25 * step}))
    snap = ray.get(server.get_snapshot.remote())
    assert snap["step"] == 2 and torch.equal(snap["rows"], rows) and torch.equal(snap["labels"], labels)
    assert ray.get(server.cluster_sizes.remote()) == [4, 4, 3]
    assert ray.get(server.label_churn.remote()) == [(1, 0.25), (2, 0.5)]
    near = ray.get(server.neighbours.remote(5, 3))
    ref = (rows @ rows[5]).topk(4).indices.tolist()
    assert [n["index"] for n in near] == [i for i in ref if i != 5][:3]
    assert not ray.get(server.push.remote(2, 0, 2, 11, rows[0::2], labels[0::2], cent, {}))   # stale
    with pytest.raises(ray.exceptions.RayTaskError, match="outside the bank"):
        ray.get(server.neighbours.remote(11))
    before = ray.get(server.stats.remote())
    ray.kill(server, no_restart=False)
    after = wait_for(lambda: _stats_if_new(server, before["pid"]))
    assert after["restored"]["step"] == 2 and after["restored"]["checksum"] == checksum(rows, labels)
    ray.kill(server)


def _stats_if_new(server, old_pid):
    import ray

    try:
        s = ray.get(server.stats.remote(), timeout=5)
    except Exception:
        return None
    return s if s["pid"] != old_pid else None


def _registered_checkpoints(run_dir):
    """Checkpoints Ray Train has registered (a directory alone may still be uploading)."""
    import json

    try:
        with open(os.path.join(run_dir, "checkpoint_manager_snapshot.json")) as fh:
            return json.load(fh)["checkpoint_results"]
    except (OSError, ValueError, KeyError):
        return None


def _load(path):
    return torch.load(os.path.join(path, "method_state.pt"))


def test_server_killed_mid_run_restores_its_snapshot_and_training_continues(ray_cluster, tiny_cfg):
    import ray

    from raycl import api
    from raycl.train.bank_server import actor_name

    cfg = tiny_cfg(*INTERCLR, "method.bank_sync_every=1", "run.epochs=4", "run.name=bank-kill")
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("res", fit(cfg)))
    t.start()
    server = wait_for(lambda: _actor(actor_name("bank-kill")), thread=t)
    before = wait_for(lambda: (lambda s: s if s["step"] >= 3 else None)(ray.get(server.stats.remote())), thread=t)
    ray.kill(server, no_restart=False)
    after = wait_for(lambda: _stats_if_new(server, before["pid"]))
    # the restarted server came back with the newest snapshot on disk: nothing it had assembled is lost
    assert after["restored"]["step"] >= before["step"]
    snap_file = after["restored"]["file"]
    if os.path.exists(snap_file):
        snap = torch.load(snap_file, weights_only=False)
        assert checksum(snap["rows"], snap["labels"]) == after["restored"]["checksum"]
    t.join(timeout=600)
    res = out["res"]
    assert res.metrics["global_step"] == 16
    final = ray.get(server.get_snapshot.remote())
    bank = _load(res.checkpoint.path)
    assert final["step"] == 16                       # pushes after the kill reached the new server
    assert torch.equal(final["rows"], bank["bank_rows"]) and torch.equal(final["labels"], bank["kmeans_labels"])
    assert sum(ray.get(server.cluster_sizes.remote())) == 256
    assert api.bank_server("bank-kill") is not None
    ray.kill(server)


def _actor(name):
    import ray

    try:
        return ray.get_actor(name, namespace="raycl")
    except ValueError:
        return None


def test_killed_worker_restarts_from_checkpoint_with_the_bank_restored(ray_cluster, tiny_cfg, tmp_path):
    from ray.util.state import list_actors

    from raycl.train.checkpoint import load_model_file, read_state

    ref = fit(tiny_cfg(*INTERCLR, "run.epochs=4", "run.name=bank-ref"))
    cfg = tiny_cfg(*INTERCLR, "run.epochs=4", "run.name=bank-crash", "run.max_failures=1")
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("res", fit(cfg)))
    t.start()
    run_dir = os.path.join(cfg.run.storage_path, "bank-crash")
    wait_for(lambda: _registered_checkpoints(run_dir), every=0.05, thread=t)
    alive = [("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")]
    workers = list_actors(address=ray_cluster.state_api_address, filters=alive)
    os.kill(workers[0]["pid"], signal.SIGKILL)
    t.join(timeout=600)
    res = out["res"]
    state = read_state(res.checkpoint.path)
    assert len(state["resumes"]) == 1 and state["resumes"][0] >= 1   # restarted once, from a checkpoint
    a, b = _load(ref.checkpoint.path), _load(res.checkpoint.path)
    # restored, not re-initialised: the recovered run ends with the uninterrupted run's bank
    assert torch.allclose(a["bank_rows"], b["bank_rows"], atol=1e-5) and torch.equal(a["kmeans_labels"], b["kmeans_labels"])
    ma, mb = load_model_file(ref.checkpoint.path)["state_dict"], load_model_file(res.checkpoint.path)["state_dict"]
    assert torch.allclose(ma["kmeans.centroids"], mb["kmeans.centroids"], atol=1e-5)


def test_resume_on_another_worker_count_reshards_the_bank(ray_cluster, tiny_cfg):
    from raycl.errors import CheckpointError

    # a bank larger than the data: rows 256..299 are never updated, so after re-sharding from 2 to
    # 3 workers they must come back bit for bit at the same global indices
    base = [*INTERCLR, "method.bank_size=300", "data.batch_size=48", "run.epochs=2", "run.name=bank-reshard",
            "distributed.zero_stage=2", "optim.name=lars"]
    first = fit(tiny_cfg(*base, "run.stop_after_epochs=1"))
    saved = _load(first.checkpoint.path)
    res = fit(tiny_cfg(*base, "distributed.workers=3"))
    after = _load(res.checkpoint.path)
    assert res.metrics["epoch"] == 2
    assert torch.equal(after["bank_rows"][256:], saved["bank_rows"][256:])
    assert not torch.equal(after["bank_rows"][:256], saved["bank_rows"][:256])
    with pytest.raises(CheckpointError, match="zero_stage=2; this run asks for 1"):
        fit(tiny_cfg(*base, "distributed.zero_stage=1", "run.epochs=3"))   # optimizer state laid out per stage


class _SlowServer(BankServer.__ray_actor_class__):
    """The real server whose pushes take a while, as while it restarts or snapshots under load."""

    def push(self, *args, **kwargs):
        time.sleep(1.0)
        return super().push(*args, **kwargs)


def test_a_push_skipped_while_one_is_in_flight_is_made_up_at_flush(ray_cluster, tmp_path):
    import types

    import ray

    from raycl.bank import MemoryBank, OnlineKMeans
    from raycl.train.bank_server import NAMESPACE, Pusher, actor_name

    server = ray.remote(_SlowServer).options(name=actor_name("slow"), namespace=NAMESPACE).remote(str(tmp_path))
    bank = MemoryBank(32, 8)
    method = types.SimpleNamespace(bank=bank, kmeans=OnlineKMeans(4, bank))
    pusher = Pusher("slow", every=1)
    pusher.maybe_push(method, 1, {}, 0)
    pusher.maybe_push(method, 2, {}, 0)     # step 1 is still in flight: skipped
    assert pusher.skipped == 1
    pusher.flush()
    final = ray.get(server.get_snapshot.remote())
    assert final["step"] == 2 and torch.equal(final["rows"], bank.rows)
    ray.kill(server)
