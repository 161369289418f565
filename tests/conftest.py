import os
import pathlib
import sys

import pytest

# tests/ mirrors the package: tests/<room>/ for each room of raycl/, tests/product/ for what spans it
# (the CLI's bad input, the docs' commands, notebooks, jobs), tests/helpers/ apart. Test modules import
# helpers and each other's fixtures by module name, and the processes a test starts (a CLI, a Ray
# worker unpickling a function defined in a test module, a notebook) do too: every folder goes on
# sys.path here and on PYTHONPATH for them.
TESTS = pathlib.Path(__file__).resolve().parent
FOLDERS = [str(p) for p in sorted(TESTS.iterdir()) if p.is_dir() and not p.name.startswith((".", "__"))]
sys.path[:0] = [f for f in FOLDERS if f not in sys.path]
os.environ["PYTHONPATH"] = os.pathsep.join([*FOLDERS, *filter(None, [os.environ.get("PYTHONPATH")])])

from tiny import tiny_config  # noqa: E402  (tests/helpers/, on the path from here on)

os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
# Train V2's controller polls its workers every 2 s by default, so every fit() waits ~2-4 s after the
# workers finish; the suite runs ~55 fits (measured: 27.2/24.7/27.4 s vs 24.8/21.9/24.2 s per tiny fit).
# Set before any Ray instance starts, so raylets, subprocess CLIs and notebooks inherit it.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")


@pytest.fixture(scope="session", autouse=True)
def unrelated_ray_instance():
    """RAYCL_TEST_BESIDE_RAY=1 (.ci/run sets it): the whole suite runs while another Ray instance, a
    user's own local cluster say, runs on the machine. A test or a raycl call that finds "the" local
    Ray by itself (address "auto", the State API without an address) then fails."""
    if os.environ.get("RAYCL_TEST_BESIDE_RAY") != "1":
        yield None
        return
    import shutil
    import tempfile

    from ray_heads import start_head, stop_head

    temp_dir = tempfile.mkdtemp(prefix="ro", dir="/tmp")  # short: Ray's socket paths are length-limited
    env = {**os.environ, "RAY_DISABLE_USAGE_STATS": "1"}
    env.pop("RAY_ADDRESS", None)
    start_head(temp_dir, 1, env)
    try:
        yield temp_dir
    finally:
        stop_head(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster():
    """One real local Ray instance shared by the tests that need it (ray.init costs ~7 s)."""
    import ray

    # Workers unpickle training functions defined in test modules: let them import every test folder.
    path = os.environ["PYTHONPATH"]
    from raycl.train.trainer import local_ray_options

    ctx = ray.init(**local_ray_options(4, {"PYTHONPATH": path}))
    ray.state_api_address = "http://" + ctx.dashboard_url  # for ray.util.state calls: this cluster, no other
    yield ray
    ray.shutdown()


@pytest.fixture
def tiny_cfg(tmp_path):
    """``tiny_config`` with its runs under this test's tmp_path."""
    return lambda *overrides: tiny_config(tmp_path / "runs", *overrides)


# The fast tier (`pytest -m "not slow"`, CONTRIBUTING "Checks") runs in this one process: it leaves out
# everything that starts Ray or trains through Ray Train, and everything that starts other Python
# processes (a CLI in a subprocess, a pip install, a group of gloo processes). A test that takes the
# shared Ray instance is slow by definition; the others say so with @pytest.mark.slow or sit in a
# module listed here.
SLOW_MODULES = {"test_demo", "test_jobs", "test_notebooks", "test_elastic_cluster", "test_methods_ray",
                "test_train_ray", "test_walkthrough", "test_zero_state", "test_method_plugin",
                "test_protocol_plugin"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "ray_cluster" in getattr(item, "fixturenames", ()) or item.module.__name__ in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
