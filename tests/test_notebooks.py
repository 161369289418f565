"""Both notebooks execute headless top to bottom at tiny size (nbclient, a real kernel, real Ray)
and draw their figures; the sweep notebook's ASHA stops at least one of its 4 trials early and
its best config trains."""
import json
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def execute(name, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    env = {"RAYCL_NOTEBOOK_TINY": "1", "RAYCL_NOTEBOOK_STORAGE": str(tmp_path), "RAYCL_ROOT": str(ROOT),
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    os.environ.pop("RAY_ADDRESS", None)
    try:
        NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def figures(nb):
    return sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if "image/png" in o.get("data", {}))


def test_quickstart_notebook_runs_and_plots(tmp_path):
    nb = execute("quickstart.ipynb", tmp_path)
    assert figures(nb) >= 5          # views, live curves + cluster sizes, churn, evaluation, neighbours


def test_sweep_notebook_asha_stops_a_trial_and_the_best_config_trains(tmp_path):
    nb = execute("sweep.ipynb", tmp_path)
    assert figures(nb) >= 1
    result = json.loads(next(tmp_path.glob("*.yaml.result.json")).read_text())
    assert len(result["trials"]) == 4 and all(t["error"] is None for t in result["trials"])
    assert any(t["stopped_early"] for t in result["trials"])
    assert os.path.exists(result["best_config"])
    best = json.loads(next(tmp_path.glob("*.yaml.best.json")).read_text())
    assert best["epoch"] == 1 and 0 <= best["knn_top1"] <= 1
