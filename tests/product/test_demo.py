"""The demo, at reduced size, through the real CLI: trains on Ray, evaluates, and its encoder beats
a random-init encoder of the same architecture on the held-out split."""
import json
import os
import subprocess
import sys

import pytest

from raycl.errors import ConfigError


def test_demo_cli_beats_random_init(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "raycl", "demo", "data.num_samples=2000", "data.batch_size=128", "run.epochs=3",
         "run.checkpoint_every=3", "eval.linear_epochs=10", f"run.storage_path={tmp_path}"],
        capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    last = p.stdout.strip().splitlines()[-1]
    out = json.loads(last)
    floors = ("random_init_knn_top1", "random_init_linear_probe_top1", "pixels_knn_top1", "pixels_linear_probe_top1")
    ranks = ("effective_rank", "random_init_effective_rank", "pixels_effective_rank")
    assert set(out) == {"method", "epochs", "workers", "knn_top1", "linear_probe_top1", *floors, *ranks, "images_per_s",
                        "run_dir", "checkpoint", "pixels_knn_preprocessing", "pixels_linear_probe_preprocessing"}
    assert {out["pixels_knn_preprocessing"], out["pixels_linear_probe_preprocessing"]} <= {"stored", "centred", "standardised"}
    assert out["method"] == "simclr" and out["epochs"] == 3 and out["workers"] == 2
    assert all(0.0 <= out[k] <= 1.0 for k in ("knn_top1", "linear_probe_top1", *floors))
    assert 1.0 <= out["effective_rank"] <= 128 and 1.0 <= out["pixels_effective_rank"] <= 28 * 28, out
    assert out["knn_top1"] > out["random_init_knn_top1"] + 0.05, out
    assert out["images_per_s"] > 0 and out["run_dir"].startswith(str(tmp_path / "demo-"))
    first = [ln for ln in p.stderr.splitlines() if ln.strip()][0]
    assert first == f"[raycl] demo: new run {os.path.basename(out['run_dir'])!r} in {tmp_path} " \
                    "(continue it later with: raycl demo --resume)", first
    assert "[raycl] epoch 3/3" in p.stdout          # progress lines reached the driver
    # what a person sees: raycl's lines, a summary, the JSON; none of Ray's or DeepSpeed's routine lines
    import re

    progress = re.compile(r"^\[raycl\] epoch \d+/\d+ step \d+/\d+ \| loss ")
    seen = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip() and not progress.match(ln)]
    assert len(seen) < 30, "\n".join(seen)
    routine = ["Token authentication is enabled", "Requesting resources", "worker group", "world_rank=",
               "PreemptionWatcher", "Setting accelerator to CPU", "No CUDA runtime is found",
               "deepspeed_shm_comm_op built successfully", "untested optimizer", "all_gather_into_tensor",
               "Reporting training result", "Autoscaler status"]
    assert [ln for ln in seen if any(r in ln for r in routine)] == []
    assert any(progress.match(ln) for ln in p.stdout.splitlines())          # the progress display
    table = [i for i, ln in enumerate(seen) if ln.split() == ["epoch", "loss", "knn_top1", "images/s", "time"]]
    assert [seen[i + 1 + e].split()[0] for i in table for e in range(3)] == ["1", "2", "3"]  # the summary
    assert any(re.fullmatch(r"raw pixels\s+0\.\d{4}\s+0\.\d{4}\s+\d+\.\d", ln) for ln in seen)  # the floors table
    from raycl import api

    cfg = api.load_config(api.demo_config_path(), [f"run.storage_path={tmp_path}"])
    assert api.demo_run_name(cfg, resume=True)[0] == os.path.basename(out["run_dir"])  # `raycl demo --resume`


def test_each_demo_is_a_new_run_and_resume_continues_the_newest(tmp_path):
    """Two demos started at once train in two run directories; --resume continues the newest one."""
    from raycl import api

    cfg = api.load_config(api.demo_config_path(), [f"run.storage_path={tmp_path}"])
    names = {api.demo_run_name(cfg, resume=False)[0] for _ in range(3)}
    assert len(names) == 3 and all(os.path.isdir(tmp_path / n) for n in names)
    with pytest.raises(ConfigError, match="--resume: no demo run with a checkpoint"):
        api.demo_run_name(cfg, resume=True)
