"""A method from outside raycl: the example package ``examples/toy-method`` (the one the docs' "Adding a
method" guide shows) registers a method through the ``raycl.methods`` entry point group and trains it
with ``method.name`` on 2 Ray workers, without a line of raycl edited. A broken entry point is one
clear error, and only for the config that asks."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from raycl.api import demo_config_path

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "toy-method"
GOOD = 'toy_contrast = "toy_method:ToyContrast"\n'
BROKEN = 'toy_missing = "toy_method:NotThere"\n'  # added to the copy only: an entry point that does not import
# and one whose method sets the view attribute an older raycl read (it would train on other views)
STALE = 'toy_stale = "toy_method:Stale"\n'
STALE_CLASS = '\n\nclass Stale(ToyContrast):\n    name = "toy_stale"\n    augmentation = "none"\n'


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The example package copied out of the repository (building it writes beside its sources), given
    a second, broken entry point, and installed by pip (no network, no raycl edit) into a folder of its own."""
    root = tmp_path_factory.mktemp("toy")
    pkg = root / "pkg"
    shutil.copytree(EXAMPLE, pkg, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    pyproject = (pkg / "pyproject.toml").read_text()
    assert GOOD in pyproject, "examples/toy-method/pyproject.toml no longer registers toy_contrast"
    (pkg / "pyproject.toml").write_text(pyproject.replace(GOOD, GOOD + BROKEN + STALE))
    (pkg / "toy_method.py").write_text((pkg / "toy_method.py").read_text() + STALE_CLASS)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(root / "site"), str(pkg)], check=True, capture_output=True, timeout=300)
    return root / "site"


def raycl_cli(site, *args, timeout=600):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "raycl", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_a_broken_entry_point_is_one_line_for_the_config_that_names_it(site):
    p = raycl_cli(site, "config", "show", demo_config_path(), "method.name=toy_missing")
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "method.name: 'toy_missing': entry point 'toy_method:NotThere' does not import" in p.stderr
    ok = raycl_cli(site, "config", "show", demo_config_path(), "method.name=toy_contrast")
    assert ok.returncode == 0 and "name: toy_contrast" in ok.stdout, ok.stderr
    stale = raycl_cli(site, "config", "show", demo_config_path(), "method.name=toy_stale")
    assert stale.returncode == 2 and "sets 'augmentation', which raycl no longer reads" in stale.stderr, stale.stderr


def test_a_method_from_another_package_brings_its_own_config_keys_bounds_rules_and_schema(site):
    show = ["config", "show", demo_config_path(), "method.name=toy_contrast"]
    ok = raycl_cli(site, *show, "method.loss_weight=0.5")
    assert ok.returncode == 0 and "loss_weight: 0.5" in ok.stdout, ok.stderr
    low = raycl_cli(site, *show, "method.loss_weight=0")
    assert low.returncode == 2 and "method.loss_weight: must be > 0, got 0" in low.stderr, low.stderr
    rule = raycl_cli(site, *show, "method.loss_weight=2", "optim.base_lr=2")
    assert "method.loss_weight: above 1 with optim.base_lr above 1 diverges" in rule.stderr, rule.stderr
    # raycl's own methods do not take its key, and it does not take theirs
    assert "method.loss_weight: unknown key" in raycl_cli(site, "config", "show", demo_config_path(),
                                                          "method.loss_weight=0.5").stderr
    other = raycl_cli(site, *show, "method.queue_size=4")
    assert "method.queue_size: unknown key; allowed keys in 'method' (method toy_contrast): name, temperature, " \
        "views, loss_weight" in other.stderr, other.stderr
    schema = json.loads(raycl_cli(site, "config", "schema").stdout)
    toy = schema["$defs"]["method_toy_contrast"]
    assert toy["properties"]["loss_weight"]["exclusiveMinimum"] == 0
    assert toy["properties"]["name"]["const"] == "toy_contrast"


@pytest.mark.slow
def test_a_method_from_another_package_trains_on_two_ray_workers(site, tmp_path):
    p = raycl_cli(site, "train", demo_config_path(), "method.name=toy_contrast", "method.loss_weight=0.5",
                  "data.num_samples=256", "data.batch_size=64", "model.width=8", "model.proj_hidden_dim=32",
                  "model.proj_out_dim=16", "run.epochs=2", "run.checkpoint_every=2", "eval.knn_k=20",
                  "optim.warmup_epochs=0",
                  f"run.storage_path={tmp_path}", "run.name=toy")
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["epoch"] == 2 and out["workers"] == 2 and out["loss"] > 0 and "method/toy_scalar" in out
    from raycl.train.checkpoint import read_state

    assert read_state(out["checkpoint"])["signature"]["method"] == "toy_contrast"
