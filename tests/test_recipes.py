"""Every recipe in jobs/configs loads and validates once pointed at the built-in data on CPU, and
the LARS recipe trains a few steps on Ray with its own method, optimizer and ZeRO stage."""
import pathlib

import numpy as np
import pytest

from raycl.config import load_config

RECIPES = sorted((pathlib.Path(__file__).resolve().parents[1] / "jobs" / "configs").glob("*.yaml"))


def on_cpu(tmp_path, *extra):
    return ["data.dataset=demo", "data.path=null", "data.eval_path=null", "data.image_size=28", "data.channels=1",
            "data.num_samples=192", "data.batch_size=96", "model.width=8", "model.proj_hidden_dim=32",
            "model.proj_out_dim=16", "distributed.workers=2", "distributed.use_gpu=false",
            "distributed.precision=fp32", "distributed.cpus_per_worker=1", "distributed.torch_threads=1",
            "run.epochs=1", "run.checkpoint_every=1", "run.max_failures=0", "optim.warmup_epochs=0", "eval.knn_k=20",
            f"run.storage_path={tmp_path}", *extra]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_validates(recipe, tmp_path):
    as_written = pytest.importorskip("yaml").safe_load(recipe.read_text())
    cfg = load_config(str(recipe), on_cpu(tmp_path))
    assert cfg.method.name == as_written["method"]["name"]
    assert cfg.optim.name == as_written["optim"]["name"]


def test_tcl_lars_recipe_trains_on_ray(ray_cluster, tmp_path):
    from raycl.train.trainer import fit

    recipe = next(p for p in RECIPES if p.stem == "tcl_selfsup_lars")
    cfg = load_config(str(recipe), on_cpu(tmp_path))
    assert (cfg.method.name, cfg.optim.name, cfg.distributed.zero_stage) == ("tcl", "lars", 2)
    res = fit(cfg)
    assert res.metrics["global_step"] == 2 and np.isfinite(res.metrics["loss"])
