"""Tune sweeps: the space is validated before any trial starts; ASHA stops lagging trials; the
best config is written as YAML that ``raycl train`` accepts."""
import pytest
import yaml

from raycl.errors import ConfigError
from raycl.tune import load_sweep

TINY = {"data": {"num_samples": 256, "batch_size": 64},
        "model": {"width": 8, "proj_hidden_dim": 32, "proj_out_dim": 16},
        "optim": {"warmup_epochs": 0},
        "distributed": {"workers": 1, "torch_threads": 1},
        "eval": {"knn_k": 20}, "run": {"epochs": 3, "log_every": 100}}


def write(tmp_path, sweep, **extra):
    raw = {**TINY, "sweep": sweep, **extra}
    raw["run"] = {**TINY["run"], "storage_path": str(tmp_path / "runs"), "name": "sw"}
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(raw))
    return str(p)


@pytest.mark.parametrize("sweep, match", [
    ({"space": {"optim.lr": {"grid": [0.1]}}}, "sweep.space.optim.lr: 'optim.lr' is not a config key"),
    ({"space": {}}, "sweep.space: empty"),
    ({"space": {"optim.base_lr": {"grid": [0.1]}}, "grace_period": 0}, "sweep.grace_period: must be an integer >= 1"),
    ({"space": {"optim.base_lr": {"grid": [-0.1]}}}, "optim.base_lr: must be >= 0"),
    ({"space": {"optim.base_lr": {"loguniform": [0.0, 1.0]}}}, "low must be > 0"),
    ({"space": {"optim.base_lr": {"normal": [0, 1]}}}, "expected one of"),
    ({"space": {"optim.base_lr": {"grid": [0.1]}}, "patience": 3}, "sweep.patience: unknown key"),
])
def test_bad_sweeps_fail_before_any_trial(tmp_path, sweep, match):
    with pytest.raises(ConfigError, match=match):
        load_sweep(write(tmp_path, sweep))



def test_a_sweep_file_beside_a_config_gives_the_same_base_and_space_as_one_file(tmp_path):
    sweep = {"space": {"optim.base_lr": {"grid": [0.03, 0.3]}}, "max_concurrent": 1}
    one_file = load_sweep(write(tmp_path, sweep), ["data.batch_size=32"])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in yaml.safe_load(open(write(tmp_path, sweep))).items()
                                      if k != "sweep"}))
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"sweep": sweep}))
    assert load_sweep(str(config), ["data.batch_size=32"], str(tmp_path / "space.yaml")) == one_file
    assert one_file[0]["data"]["batch_size"] == 32 and one_file[1].space == sweep["space"]
    (tmp_path / "more.yaml").write_text(yaml.safe_dump({"sweep": sweep, "data": {"batch_size": 8}}))
    with pytest.raises(ConfigError, match="more.yaml: a sweep file beside a config holds a 'sweep:' section only; "
                                          "found data"):
        load_sweep(str(config), [], str(tmp_path / "more.yaml"))


def test_an_interrupted_sweep_resumes_without_rerunning_finished_trials(ray_cluster, tmp_path):
    """Ctrl-C (SIGINT) a 2-trial sweep (2 workers x 1 CPU on a 2-CPU local instance) once its first
    trial has finished and the second has started;
    ``raycl sweep`` again restores it (Tuner.restore): the finished trial is kept as it was, the
    interrupted one runs to the end, and the best config is written."""
    import glob
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    path = write(tmp_path, {"space": {"optim.base_lr": {"grid": [0.05, 0.5]}}, "max_concurrent": 1,
                            "grace_period": 2})
    cfg = yaml.safe_load(open(path))
    cfg["run"]["epochs"] = 2
    # 2 workers x 1 CPU on a 2-CPU Ray instance: the whole instance is one worker group, so the
    # trial's own actor must take no CPU (with 0.1 it never fit and Train retried forever).
    cfg["distributed"]["workers"] = 2
    yaml.safe_dump(cfg, open(path, "w"))
    sweep_dir = tmp_path / "runs" / "sw-sweep"
    log = open(tmp_path / "first.log", "w")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-m", "raycl", "sweep", path, "--num-cpus", "2"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            results = sorted(glob.glob(str(sweep_dir / "_trial_*" / "result.json")))
            if len(results) == 2 and len(open(results[0]).read().splitlines()) == 2:
                break
            time.sleep(1)
        assert proc.poll() is None, open(tmp_path / "first.log").read()[-3000:]
        assert len(results) == 2, "the second trial never started"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        children = [proc] + [c for c in psutil.Process(proc.pid).children(recursive=True)] if proc.poll() is None else []
        for p in children:
            p.kill()
    console = open(tmp_path / "first.log").read()  # a line as each trial starts; Tune's 30 s table is off
    assert console.count("[raycl] sweep: trial ") >= 3 and "started with optim.base_lr=0.05" in console, console[-3000:]
    assert "(optim.base_lr=0.05) ended after 2 epochs: best knn_top1 0." in console, console[-3000:]
    assert "Trial status:" not in console and "Current best trial" not in console, console[-3000:]
    first = {os.path.basename(os.path.dirname(r)): open(r).read() for r in results}
    finished = [t for t, text in first.items() if len(text.splitlines()) == 2]
    assert len(finished) == 1

    from raycl.api import sweep

    result = sweep(path)
    after = {os.path.basename(os.path.dirname(r)): open(r).read()
             for r in glob.glob(str(sweep_dir / "_trial_*" / "result.json"))}
    assert set(after) == set(first)                      # the same two trials, none started afresh
    assert after[finished[0]] == first[finished[0]]       # the finished one was not run again
    assert [t["error"] for t in result["trials"]] == [None, None]
    assert sorted(t["epochs"] for t in result["trials"]) == [2, 2]
    assert yaml.safe_load(open(result["best_config"]))["optim"]["base_lr"] in (0.05, 0.5)
    # one logged run per trial, each epoch once (the interrupted trial's resumed curve included)
    from curves import tensorboard_scalars

    logged = sorted(glob.glob(str(tmp_path / "runs" / "trial-*" / "tensorboard")))
    assert len(logged) == 2
    for d in logged:
        steps = [s for s, _ in tensorboard_scalars(d)["loss"]]   # one point per epoch, at its last step
        assert len(steps) == 2 and 0 < steps[0] < steps[1] == 2 * steps[0], (d, steps)


def test_a_sweep_whose_trials_all_stop_on_a_corrupt_shard_is_one_error(ray_cluster, tmp_path):
    """Every trial meets the same corrupt image: the sweep raises that DataError itself (the CLI's one
    line), its table says so per trial, and Tune's traceback of each trial is not logged."""
    import logging

    from test_train_ray import write_digit_shards

    from raycl.api import sweep
    from raycl.errors import DataError

    url = str(tmp_path / "shards")
    write_digit_shards(url, 128, bad_rows=(3,))
    path = write(tmp_path, {"space": {"optim.base_lr": {"grid": [0.1, 0.3]}}},
                 data={"dataset": "parquet", "path": url, "batch_size": 64})
    class Seen(logging.Handler):
        def __init__(self):
            super().__init__(logging.ERROR)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    seen = Seen()
    logging.getLogger("ray").addHandler(seen)   # Ray's loggers do not propagate to the root
    try:
        with pytest.raises(DataError, match=r"corrupt image bytes at row index 3 "):
            sweep(path)
    finally:
        logging.getLogger("ray").removeHandler(seen)
    assert any("Trials did not complete" in m for m in seen.messages)   # Tune's one-line summary still shows
    assert not [m for m in seen.messages if "Trial task failed" in m]
