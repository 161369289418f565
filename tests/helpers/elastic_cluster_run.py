"""An elastic raycl run on a local multi-node Ray cluster (``ray.cluster_utils.Cluster``: a head
without CPUs and three 1-CPU nodes, each holding one worker), with ``distributed.workers: [2, 3]``.
Once it has checkpointed on 3 workers one node is removed (the run goes on with 2 from its last
checkpoint), and once it has checkpointed on 2 a node is added (it grows back to 3 at the next resize
check). The method is InterCLR (``interclr_paced``: tests/elastic_pace/, each step on 2 workers waits 0.5 s so the
grow is seen before the run ends on any machine), so a memory bank and its k-means labels are
re-sharded at every resize.
Prints one JSON line: the run's restarts, per-epoch worker counts, final step and a summary of the
final bank. Run by tests/train/test_elastic_cluster.py in a process of its own, with TMPDIR pointing at a
private directory: ``Cluster`` writes its address to $TMPDIR/ray/ray_current_cluster, where a plain
``ray.init()`` elsewhere would otherwise find it and connect."""
import json
import os
import sys
import threading
import time

import torch
from ray.cluster_utils import Cluster

from raycl.config import load_config
from raycl.train import checkpoint as ck
from raycl.train.trainer import fit


def latest_state(run_dir):
    states = []
    for c in ck.registered_checkpoints(run_dir):
        try:
            states.append(ck.read_state(c))
        except ck.CheckpointError:
            pass   # deleted by keep_checkpoints while we read
    return max(states, key=lambda s: s["global_step"], default=None)


def wait_for(pred, what, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return
        time.sleep(0.5)
    raise TimeoutError(what)


def main(root):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(3)]
    cluster.wait_for_nodes()
    cfg = load_config(None, [
        "data.num_samples=256", "data.batch_size=48", "model.width=8", "model.proj_hidden_dim=32",
        "model.proj_out_dim=16", "run.epochs=20", "run.log_every=100", "eval.every_epochs=100",
        "distributed.torch_threads=1", "optim.warmup_epochs=0", "optim.name=lars", "distributed.zero_stage=2",
        "distributed.workers=[2, 3]", "distributed.resize_check_s=2", "run.checkpoint_every_steps=2",
        "run.max_failures=4", "run.keep_checkpoints=3", f"run.storage_path={root}", "run.name=elastic",
        "method.name=interclr_paced", "method.bank_size=256", "method.num_clusters=8", "method.num_negatives=32"])
    run_dir = os.path.join(root, "elastic")
    out = {}

    def train():
        try:
            res = fit(cfg, address=cluster.address)
            out["metrics"] = res.metrics
        except Exception as e:   # reported in the JSON line
            out["error"] = f"{type(e).__name__}: {e}"

    t = threading.Thread(target=train, daemon=True)
    t.start()
    try:
        wait_for(lambda: (s := latest_state(run_dir)) is not None and s["world_size"] == 3 and s["global_step"] >= 4,
                 "a checkpoint on 3 workers")
        cluster.remove_node(nodes[-1], allow_graceful=False)
        wait_for(lambda: (s := latest_state(run_dir)) is not None and s["world_size"] == 2,
                 "a checkpoint on 2 workers")
        cluster.add_node(num_cpus=1)
        t.join(timeout=600)
        last = max(ck.registered_checkpoints(run_dir), key=lambda c: ck.read_state(c)["global_step"])
        final = ck.read_state(last)
        bank = torch.load(os.path.join(last, ck.METHOD_STATE_FILE), weights_only=True)
        rows, labels = bank["bank_rows"], bank["kmeans_labels"]
        print(json.dumps({
            "error": out.get("error"), "alive": t.is_alive(), "global_step": final["global_step"],
            "restarts": final.get("restarts"), "workers_by_epoch": [h.get("workers") for h in final.get("history", [])],
            "bank": {"rows": rows.shape[0], "finite": bool(torch.isfinite(rows).all()),
                     "unit_norm": bool(torch.allclose(rows.norm(dim=1), torch.ones(rows.shape[0]), atol=1e-3)),
                     "distinct": int(torch.unique(rows, dim=0).shape[0]),
                     "labels": labels.shape[0], "label_range": [int(labels.min()), int(labels.max())]}}))
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
