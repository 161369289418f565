"""`ray job submit` for real: a head started with `ray start` on 127.0.0.1 with token
authentication, jobs/pretrain.py and then jobs/linear_eval.py on its checkpoint submitted through
the CLI, the run's summary, checkpoint and linear evaluation checked, and only the processes of that head stopped afterwards (the suite's own Ray instance
keeps running)."""
import json
import os
import pathlib
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
from ray_heads import start_head, stop_head

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


@pytest.fixture
def head():
    temp_dir = tempfile.mkdtemp(prefix="rj", dir="/tmp")     # short: Ray's socket paths are length-limited
    token = os.path.join(temp_dir, "token")
    with open(token, "w") as fh:
        fh.write(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token, "RAY_DISABLE_USAGE_STATS": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    dash = start_head(temp_dir, 2, env)
    try:
        yield {"env": env, "address": f"http://127.0.0.1:{dash}", "temp_dir": temp_dir}
    finally:
        stop_head(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_job_submit_runs_pretrain_with_token_auth(head, tmp_path):
    runs = tmp_path / "runs"
    cmd = [str(BIN / "ray"), "job", "submit", "--address", head["address"], "--working-dir", str(ROOT),
           "--", sys.executable, "jobs/pretrain.py", "--config", "recipe:simclr_mnist_demo",
           "data.num_samples=256", "data.batch_size=64", "model.width=8", "model.proj_hidden_dim=32",
           "model.proj_out_dim=16", "run.epochs=1", "run.checkpoint_every=1", "optim.warmup_epochs=0",
           "eval.knn_k=20", "distributed.torch_threads=1", f"run.storage_path={runs}", "run.name=job"]
    t0 = time.time()
    for _ in range(30):    # the head's job agent comes up a few seconds after `ray start` returns
        out = subprocess.run(cmd, env=head["env"], capture_output=True, text=True, timeout=600)
        if "No available agent" not in out.stdout + out.stderr:
            break
        time.sleep(2)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    job_id = re.search(r"raysubmit_\w+", out.stdout + out.stderr).group(0)
    status = subprocess.run([str(BIN / "ray"), "job", "status", "--address", head["address"], job_id],
                            env=head["env"], capture_output=True, text=True, timeout=120)
    assert "succeeded" in (status.stdout + status.stderr).lower()
    summary = json.loads(next(line for line in out.stdout.splitlines() if line.startswith('{"epoch"')))
    assert summary["epoch"] == 1 and summary["global_step"] == 4 and 0 <= summary["knn_top1"] <= 1
    assert os.path.exists(os.path.join(summary["checkpoint"], "model.pt"))
    assert summary["checkpoint"].startswith(str(runs))
    # jobs/linear_eval.py runs linear evaluation of that run's backbone, with the recipe --config names
    # (1 epoch there; the default protocol trains 10)
    recipe = tmp_path / "linear.yaml"
    recipe.write_text("data: {batch_size: 64}\noptim: {name: sgd, base_lr: 0.1, weight_decay: 0.0}\nrun: {epochs: 1}\n")
    linear = cmd[: cmd.index("--") + 2] + ["jobs/linear_eval.py", "--checkpoint", str(runs / "job"),
                                         "--config", str(recipe), "distributed.torch_threads=1"]
    out = subprocess.run(linear, env=head["env"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(next(line for line in out.stdout.splitlines() if '"best_linear_eval_top1"' in line))
    assert result["linear_eval_best_epoch"] == 1 and 0 <= result["best_linear_eval_top1"] <= 1
    assert result["linear_eval_run_dir"].startswith(str(runs))
    # without the token the job API refuses the same submission
    env = {k: v for k, v in head["env"].items() if k != "RAY_AUTH_TOKEN_PATH"}
    env["HOME"] = str(tmp_path)               # no ~/.ray/auth_token to fall back on
    denied = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert denied.returncode != 0 and "token" in (denied.stdout + denied.stderr).lower()
    assert time.time() - t0 < 600
