"""Every recipe in raycl/recipes loads and validates once pointed at the built-in data on CPU, and
the LARS recipe trains a few steps on Ray with its own method, optimizer and ZeRO stage."""
import pathlib

import numpy as np
import pytest

from raycl.config import load_config

RECIPES = sorted((pathlib.Path(__file__).resolve().parents[2] / "raycl" / "recipes").glob("*.yaml"))


BANK_ON_CPU = {"bank_size": 192, "num_clusters": 10, "num_negatives": 32}


def on_cpu(tmp_path, *extra, method="interclr"):
    """Overrides that make a recipe train on the built-in data; the bank keys go to the methods that
    have them (the method's own section refuses any other method's key)."""
    from raycl.methods import REGISTRY

    own = REGISTRY[method].Config.model_fields
    bank = [f"method.{key}={value}" for key, value in BANK_ON_CPU.items() if key in own]
    return ["data.dataset=demo", "data.path=null", "data.eval_path=null", "data.image_size=28", "data.channels=1",
            "data.num_samples=192", "data.batch_size=96", "model.width=8", "model.proj_hidden_dim=32",
            "model.proj_out_dim=16", "distributed.workers=2", "distributed.use_gpu=false",
            "distributed.precision=fp32", "distributed.cpus_per_worker=1", "distributed.torch_threads=1",
            "run.epochs=1", "run.checkpoint_every=1", "run.max_failures=0", "optim.warmup_epochs=0", "eval.knn_k=20",
            f"run.storage_path={tmp_path}", *bank, "optim.schedule=cosine", "optim.milestones=[]", *extra]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_validates(recipe, tmp_path):
    as_written = pytest.importorskip("yaml").safe_load(recipe.read_text())
    cfg = load_config(str(recipe), on_cpu(tmp_path, method=as_written["method"]["name"]))
    assert cfg.method.name == as_written["method"]["name"]
    assert cfg.optim.name == as_written["optim"]["name"]


def test_interclr_4096_recipe_arithmetic(tmp_path):
    recipe = next(p for p in RECIPES if p.stem == "interclr_imagenet_4096")
    cfg = load_config(str(recipe), ["data.dataset=demo", "data.path=null", "data.eval_path=null"])
    assert cfg.lr == pytest.approx(4.8) and cfg.optim.final_lr == pytest.approx(4.8e-3)
    assert (cfg.optim.name, cfg.optim.weight_decay, cfg.optim.warmup_epochs, cfg.run.epochs) == ("lars", 1e-6, 10, 1000)
    assert cfg.micro_batch * cfg.distributed.workers * cfg.distributed.grad_accum == 4096
    # the same global batch on 2 CPU workers by accumulation
    two = load_config(str(recipe), ["data.dataset=demo", "data.path=null", "data.eval_path=null",
                                    "distributed.workers=2", "distributed.grad_accum=16", "distributed.use_gpu=false",
                                    "distributed.precision=fp32"])
    assert two.micro_batch == 128 and two.lr == cfg.lr


@pytest.mark.parametrize("stem, method", [("tcl_selfsup_lars", "tcl"), ("interclr_imagenet_4096", "interclr")])
def test_lars_recipes_train_on_ray(ray_cluster, tmp_path, stem, method):
    from raycl.train.trainer import fit

    recipe = next(p for p in RECIPES if p.stem == stem)
    cfg = load_config(str(recipe), on_cpu(tmp_path, "distributed.grad_accum=2", method=method))
    assert (cfg.method.name, cfg.optim.name, cfg.distributed.zero_stage) == (method, "lars", 2)
    res = fit(cfg)
    assert res.metrics["global_step"] == 2 and np.isfinite(res.metrics["loss"])


def test_interclr_recipe_at_batch_4096_on_two_cpu_workers(ray_cluster, tmp_path):
    """The recipe's real global batch, 4096, on 2 CPU workers by accumulating 16 micro-batches of 128."""
    from raycl.train.trainer import fit

    recipe = next(p for p in RECIPES if p.stem == "interclr_imagenet_4096")
    cfg = load_config(str(recipe), on_cpu(tmp_path, "data.num_samples=null", "data.batch_size=4096",
                                          "distributed.grad_accum=16", "model.width=4", "method.bank_size=4000",
                                          "method.num_clusters=40", "eval.every_epochs=1", "eval.max_train_samples=500"))
    assert cfg.data.batch_size == 4096 and cfg.micro_batch == 128
    res = fit(cfg)
    assert res.metrics["global_step"] == 1 and np.isfinite(res.metrics["loss"])
