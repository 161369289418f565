"""Elasticity on real Ray: a multi-node local cluster loses a node mid-run and gets one back
(tests/helpers/elastic_cluster_run.py drives it in a process of its own)."""
import json
import os
import subprocess
import sys
import tempfile

HELPERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers")


def test_an_elastic_run_shrinks_when_a_node_dies_and_grows_when_one_returns(tmp_path):
    # A private TMPDIR keeps the cluster's ray_current_cluster file (and session dirs) away from the
    # suite's own Ray instance; short, since Ray's socket paths must stay under 108 characters.
    private_tmp = tempfile.mkdtemp(prefix="rcl-", dir="/tmp")
    env = {**os.environ, "TMPDIR": private_tmp, "PYTHONPATH": os.pathsep.join(
               p for p in (HELPERS, os.path.join(HELPERS, "elastic_pace"), os.environ.get("PYTHONPATH")) if p),
           # without it Train waits 60 s for the 3rd worker's node before starting with 2
           "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "10",
           # the GCS declares the removed node dead after 3 missed 1 s health checks, not 5 of 3 s: Train
           # stops retrying 3 workers sooner (the shrink took 37.6 s from the removal, 24.1 s with these)
           "RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
           "RAY_health_check_failure_threshold": "3"}
    env.pop("RAY_ADDRESS", None)
    p = subprocess.run([sys.executable, os.path.join(HELPERS, "elastic_cluster_run.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=900, env=env)
    assert p.returncode == 0, p.stderr[-4000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["error"] is None and not out["alive"], out
    # 256 samples, global batch 48: 6 steps an epoch (the last padded), 20 epochs. A fast machine can
    # finish on 2 workers before Ray sees the returned node, so the 2-worker steps are paced
    # (tests/elastic_pace/elastic_pace.py)
    assert out["global_step"] == 20 * 6, out
    causes = [(r["cause"], r["from_workers"], r["to_workers"]) for r in out["restarts"]]
    assert ("shrink", 3, 2) in causes and ("grow", 2, 3) in causes, causes
    shrink = next(r for r in out["restarts"] if r["cause"] == "shrink")
    grow = next(r for r in out["restarts"] if r["cause"] == "grow")
    assert shrink["global_step"] < grow["global_step"]
    # every epoch is in the history once, with the count that finished it
    assert len(out["workers_by_epoch"]) == 20 and set(out["workers_by_epoch"]) <= {2, 3}
    assert out["workers_by_epoch"][-1] == 3
    bank = out["bank"]
    assert bank["rows"] == bank["labels"] == 256 and bank["finite"] and bank["unit_norm"], bank
    assert bank["distinct"] == 256 and 0 <= bank["label_range"][0] <= bank["label_range"][1] < 8, bank
