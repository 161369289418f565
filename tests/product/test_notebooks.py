"""The notebooks execute headless top to bottom at tiny size (nbclient, a real kernel, real Ray)
and draw their figures; the sweep notebook's ASHA stops at least one of its 4 trials early and
its best config trains; the quality notebook summarises a table still being measured."""
import json
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def execute(name, tmp_path, **extra_env):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    env = {"RAYCL_NOTEBOOK_TINY": "1", "RAYCL_NOTEBOOK_STORAGE": str(tmp_path), "RAYCL_ROOT": str(ROOT),
           "MPLBACKEND": "module://matplotlib_inline.backend_inline", **extra_env}
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


def test_quality_notebook_draws_a_table_still_being_measured(tmp_path):
    """Seed 1 has runs but no floors yet: the summary is seed 0's alone, every run is drawn, the
    effective ranks in a third panel, CLSA >= MoCo v2 judged on the means."""
    from raycl.quality.harness import save_state

    def run(method, seed, knn, linear):
        return {"method": method, "seed": seed, "knn_top1": knn, "linear_probe_top1": linear, "images_per_s": 300.0,
                "effective_rank": 40.0 + seed}

    floors = {"random_init_knn_top1": 0.75, "random_init_linear_probe_top1": 0.79, "random_init_effective_rank": 46.0,
              "pixels_knn_top1": 0.81, "pixels_linear_probe_top1": 0.84, "pixels_effective_rank": 410.0}
    state = {"base": {}, "seeds": [0, 1, 2], "tune": None, "tuned": {}, "floors": {"0": floors},
             "runs": [run("simclr", 0, 0.82, 0.87), run("moco_v2", 0, 0.80, 0.85), run("simclr", 1, 0.6, 0.6),
                      run("clsa", 0, 0.81, 0.84)]}
    save_state(state, str(tmp_path / "results.json"))
    nb = execute("quality.ipynb", tmp_path, RAYCL_QUALITY_RESULTS=str(tmp_path / "results.json"))
    assert figures(nb) == 1
    summary = {row["method"]: row for row in json.loads((tmp_path / "quality-summary.json").read_text())}
    assert list(summary) == ["simclr", "moco_v2", "clsa", "random init", "raw pixels"]
    assert (summary["simclr"]["knn_top1_mean"], summary["simclr"]["seeds"]) == (0.82, 1)   # seed 1: no floors yet
    assert summary["simclr"]["beats_floors"] and not summary["moco_v2"]["beats_floors"]    # 0.80 < the pixels' 0.81
    assert summary["raw pixels"]["linear_probe_top1_mean"] == 0.84
    assert summary["raw pixels"]["effective_rank_mean"] == 410.0 and summary["clsa"]["effective_rank_mean"] == 40.0
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "clsa >= moco_v2: kNN by the means (one seed) (+0.0100); linear not shown (-0.0100)" in printed
