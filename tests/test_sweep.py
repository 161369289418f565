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

