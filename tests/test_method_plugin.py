"""A method from outside raycl: a package of its own, in a temporary folder, registers a method through
the ``raycl.methods`` entry point group and trains it with ``method.name`` on 2 Ray workers, without
a line of raycl edited. A broken entry point is one clear error, and only for the config that asks."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from raycl.api import demo_config_path

TOY = '''
"""BYOL-less toy: SimCLR's loss on one shared projection, written the way a user would."""
import torch

from raycl import collectives as dist
from raycl.losses import nt_xent
from raycl.methods import Method, MethodBatch
from raycl.models import build_backbone, mlp


class ToyContrast(Method):
    name = "toy_contrast"

    def __init__(self, cfg, channels):
        super().__init__()
        self.temperature = cfg.method.temperature
        self.backbone = build_backbone(cfg, channels)
        self.projector = mlp(self.backbone.out_dim, cfg.model.proj_hidden_dim, cfg.model.proj_out_dim)

    def forward(self, batch: MethodBatch):
        x1, x2 = batch.views
        b, r = x1.shape[0], dist.rank()
        z = self.projector(self.backbone(torch.cat([x1, x2])))
        loss = nt_xent(dist.all_gather(z[:b]), dist.all_gather(z[b:]), self.temperature,
                       anchor_rows=slice(r * b, (r + 1) * b))
        return loss, {"toy_scalar": loss.detach()}
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "raycl-toy-method"
version = "0.1.0"

[project.entry-points."raycl.methods"]
toy_contrast = "toy_method:ToyContrast"
toy_missing = "toy_method:NotThere"

[tool.setuptools]
py-modules = ["toy_method"]
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The toy package built and installed (pip, no network, no raycl edit) into a folder of its own."""
    root = tmp_path_factory.mktemp("toy")
    (root / "pkg").mkdir()
    (root / "pkg" / "toy_method.py").write_text(textwrap.dedent(TOY))
    (root / "pkg" / "pyproject.toml").write_text(PYPROJECT)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(root / "site"), str(root / "pkg")], check=True, capture_output=True, timeout=300)
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


@pytest.mark.slow
def test_a_method_from_another_package_trains_on_two_ray_workers(site, tmp_path):
    p = raycl_cli(site, "train", demo_config_path(), "method.name=toy_contrast", "data.num_samples=256",
                  "data.batch_size=64", "model.width=8", "model.proj_hidden_dim=32", "model.proj_out_dim=16",
                  "run.epochs=2", "run.checkpoint_every=2", "eval.knn_k=20", "optim.warmup_epochs=0",
                  f"run.storage_path={tmp_path}", "run.name=toy")
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["epoch"] == 2 and out["workers"] == 2 and out["loss"] > 0 and "method/toy_scalar" in out
    from raycl.train.checkpoint import read_state

    assert read_state(out["checkpoint"])["signature"]["method"] == "toy_contrast"
