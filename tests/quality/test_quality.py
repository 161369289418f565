"""raycl.quality.harness without Ray: presets sized to the data, variants, the summary's arithmetic and
the results file (the end-to-end run is tests/methods/test_methods_ray.py)."""
import json
import math

import numpy as np
import pytest

from raycl.quality import harness as bench_quality
from raycl.quality.harness import load_state, method_config, portable, preset, save_state
from raycl.quality.summary import format_orderings, format_summary, orderings, summarise
from raycl.config import from_dict, load_config
from raycl.data.parquet import encode_png, write_shards
from raycl.errors import ConfigError


def test_a_memory_bank_preset_is_sized_to_the_largest_training_index(tmp_path):
    demo = load_config(None, ["data.num_samples=300"]).to_dict()
    assert "method.bank_size=300" in preset("interclr", demo)
    images = np.zeros((45, 1, 28, 28), np.uint8)
    write_shards(str(tmp_path / "s"), np.arange(100, 145), [encode_png(im) for im in images], np.zeros(45),
                 rows_per_shard=20, row_group_size=7)
    shards = load_config(None, ["data.dataset=parquet", f"data.path={tmp_path / 's'}"]).to_dict()
    assert "method.bank_size=145" in preset("interclr", shards)     # indices 100..144: 145 rows of bank
    demo_cfg = from_dict(method_config(load_config(None, ["data.num_samples=2048"]).to_dict(), "interclr"))
    assert demo_cfg.method.bank_size == 2048 and demo_cfg.method.num_clusters == 100


def test_variants_and_the_base_method_keys():
    base = load_config(None, ["method.name=simclr", "method.temperature=0.7"]).to_dict()
    tcl_self = from_dict(method_config(base, "tcl_self")).method
    assert (tcl_self.name, tcl_self.supervised, tcl_self.k1, tcl_self.k2) == ("tcl", False, 1.0, 1.5)
    assert tcl_self.temperature == 0.7                       # the base's key the method has, kept
    assert from_dict(method_config(base, "moco_v2")).method.temperature == 0.1   # its preset's, over the base's
    demo = load_config(None, ["data.num_samples=2048"]).to_dict()
    intra, full = (from_dict(method_config(demo, n)).method for n in ("interclr_intra", "interclr"))
    assert (intra.name, intra.lam, full.lam) == ("interclr", 1.0, 0.75)             # the ablation: intra alone
    assert intra.model_dump(exclude={"lam"}) == full.model_dump(exclude={"lam"})    # nothing else differs
    with pytest.raises(ConfigError, match="no preset for method 'byol'"):
        method_config(base, "byol")


def run(method, seed, knn, linear):
    return {"method": method, "seed": seed, "knn_top1": knn, "linear_probe_top1": linear, "images_per_s": 100.0 + seed, "wall_s": 60.0}


def test_the_summary_is_the_mean_and_sample_sd_over_seeds_against_both_floors():
    floors = {str(s): {"random_init_knn_top1": 0.5 + s / 100, "random_init_linear_probe_top1": 0.7,
                       "pixels_knn_top1": 0.8, "pixels_linear_probe_top1": 0.84} for s in (0, 1, 2)}
    runs = [run("a", 0, 0.81, 0.86), run("a", 1, 0.83, 0.85), run("a", 2, 0.85, 0.87),
            run("b", 0, 0.90, 0.80), run("b", 1, 0.90, 0.80), run("b", 2, 0.90, 0.80), run("b", 3, 0.1, 0.1)]
    rows = summarise({"runs": runs, "floors": floors}, ["a", "b"], [0, 1, 2])
    assert [r["method"] for r in rows] == ["a", "b", "random init", "raw pixels"]
    a, b, init, pixels = rows
    assert (a["knn_top1_mean"], a["knn_top1_sd"]) == (0.83, 0.02) and a["seeds"] == 3   # seed 3 of b: not asked
    sd = math.sqrt(((0.86 - 0.86) ** 2 + (0.85 - 0.86) ** 2 + (0.87 - 0.86) ** 2) / 2)
    assert a["linear_probe_top1_mean"] == 0.86 and a["linear_probe_top1_sd"] == round(sd, 4)
    assert a["beats_floors"] and not b["beats_floors"]        # b: linear 0.80 < the pixels' 0.84
    assert (init["knn_top1_mean"], init["knn_top1_sd"]) == (0.51, 0.01) and pixels["knn_top1_sd"] == 0.0
    assert "effective_rank_mean" not in a                 # runs without an effective rank: no rank column
    ranked = [{**r, "effective_rank": 10.0 * (i + 1)} for i, r in enumerate(runs[:3])]
    ranked_floors = {s: {**f, "pixels_effective_rank": 30.0 + int(s)} for s, f in floors.items()}
    a, _, pixels = summarise({"runs": ranked, "floors": ranked_floors}, ["a"], [0, 1, 2])
    assert (a["effective_rank_mean"], a["effective_rank_sd"]) == (20.0, 10.0) and pixels["effective_rank_mean"] == 31.0
    without_pixels = {s: {k: v for k, v in f.items() if not k.startswith("pixels")} for s, f in floors.items()}
    rows = summarise({"runs": runs, "floors": without_pixels}, ["a"], [0, 1, 2])
    assert [r["method"] for r in rows] == ["a", "random init"]


def test_the_papers_orderings_against_the_differences_of_the_means_and_their_standard_errors():
    runs = [run("tcl", s, 0.90 + s / 100, 0.91) for s in (0, 1, 2)]             # kNN 0.90 0.91 0.92
    runs += [run("supcon", s, 0.85, 0.92 - s / 100) for s in (0, 1, 2)]          # linear 0.92 0.91 0.90
    runs += [run("supervised_ce", s, 0.84 + s / 1000, 0.89) for s in (0, 1, 2)]
    runs += [run("clsa", s, 0.81 + s / 100, 0.85) for s in (0, 1, 2)] + [run("moco_v2", s, 0.80, 0.86) for s in (0, 1, 2)]
    runs += [run("interclr", 0, 0.80, 0.84)]                                    # intra-only not measured: skipped
    names = ["tcl", "supcon", "supervised_ce", "clsa", "moco_v2", "interclr"]
    floors = {str(s): {} for s in (0, 1, 2)}
    summary = summarise({"runs": runs, "floors": floors}, names, [0, 1, 2])
    tcl, clsa = orderings(summary)
    assert tcl["ordering"] == "tcl >= supcon >= supervised_ce" and clsa["ordering"] == "clsa >= moco_v2"
    se = lambda *sds: math.sqrt(sum(sd ** 2 / 3 for sd in sds))   # noqa: E731  sample sd of 3 seeds each
    assert tcl["knn_top1"]["differences"] == [0.06, round(0.85 - 0.841, 4)]
    assert tcl["knn_top1"]["holds"] and tcl["knn_top1"]["clear"] == (0.85 - 0.841 > 2 * se(0.0, 0.001))
    assert tcl["knn_top1"]["clear"] and 0.06 > 2 * se(0.01, 0.0)
    assert tcl["linear_probe_top1"]["differences"] == [0.0, 0.02] and tcl["linear_probe_top1"]["holds"]
    assert tcl["linear_probe_top1"]["clear"] is False                   # tcl = supcon's mean: no gap above its error
    gap, error = 0.82 - 0.80, se(0.01, 0.0)
    assert clsa["knn_top1"]["differences"] == [round(gap, 4)] and clsa["knn_top1"]["clear"] == (gap > 2 * error)
    assert not clsa["linear_probe_top1"]["holds"] and clsa["linear_probe_top1"]["differences"] == [-0.01]
    text = format_orderings([tcl, clsa])
    assert "tcl >= supcon >= supervised_ce: kNN shown (+0.0600, +0.0090); linear by the means only" in text
    assert "clsa >= moco_v2: kNN shown (+0.0200); linear not shown (-0.0100)" in text
    one_seed = orderings(summarise({"runs": runs, "floors": floors}, names, [0]))
    assert one_seed[1]["knn_top1"]["clear"] is None and "kNN by the means (one seed)" in format_orderings(one_seed)
    assert "rank" in format_summary(summary).splitlines()[0]


def test_the_results_file_continues_only_the_same_arguments(tmp_path):
    out = str(tmp_path / "res.json")
    args = {"base": {"data": {"crop_scale": (0.2, 1.0)}}, "seeds": [0, 1], "tune": None}
    state = load_state(out, args)
    assert state["runs"] == [] and state["tuned"] == {}
    state["runs"].append(run("a", 0, 0.8, 0.9))
    save_state(state, out)
    assert load_state(out, args)["runs"] == [run("a", 0, 0.8, 0.9)]   # a tuple reads back as a list: same
    with pytest.raises(ConfigError, match="holds results of other arguments"):
        load_state(out, {**args, "seeds": [0, 2]})
    (tmp_path / "other.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ConfigError, match="not a bench quality results file"):
        load_state(str(tmp_path / "other.json"), args)


def test_a_results_file_continues_in_another_clone_by_another_user(tmp_path, monkeypatch):
    """The file keeps paths as they are under the clone and the home folder; an older file with
    absolute paths continues too; other data is still other arguments."""
    clone_a, clone_b, home_a, home_b = (tmp_path / n for n in ("a", "b", "home_a", "home_b"))
    for folder in (clone_a, clone_b, home_a, home_b):
        folder.mkdir()

    def args_in(clone, home, data="shards/train"):
        monkeypatch.chdir(clone)
        monkeypatch.setenv("HOME", str(home))
        base = {"data": {"path": str(clone / data), "eval_path": "s3://bucket/test"},
                "run": {"storage_path": str(home / "raycl_runs")}}
        return {"base": base, "seeds": [0], "tune": None}

    out = str(tmp_path / "res.json")
    args = args_in(clone_a, home_a)
    state = load_state(out, args)
    assert state["base"] == {"data": {"path": "./shards/train", "eval_path": "s3://bucket/test"},
                             "run": {"storage_path": "~/raycl_runs"}}
    state["runs"].append(run("a", 0, 0.8, 0.9))
    save_state(state, out)
    assert load_state(out, args_in(clone_b, home_b))["runs"] == [run("a", 0, 0.8, 0.9)]
    with pytest.raises(ConfigError, match="holds results of other arguments"):
        load_state(out, args_in(clone_b, home_b, data="shards/other"))
    older = {**args_in(clone_a, home_a), "runs": [run("b", 0, 0.7, 0.8)]}   # absolute paths kept
    (tmp_path / "older.json").write_text(json.dumps(older))
    assert load_state(str(tmp_path / "older.json"), args_in(clone_a, home_a))["runs"] == [run("b", 0, 0.7, 0.8)]
    assert portable(None) is None and portable({"data": {"path": "/elsewhere/x"}}) == {"data": {"path": "/elsewhere/x"}}


def test_the_results_file_is_written_before_any_training(tmp_path, monkeypatch):
    """--out in a folder not made yet is made; one that cannot be written is one line before a run trains."""
    def train_here(raw, name, seed, address):
        raise AssertionError("trained before the results file was written")

    monkeypatch.setattr(bench_quality, "run_once", train_here)
    base = load_config(None, ["data.num_samples=300"]).to_dict()
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ConfigError, match="--out: cannot write the results file '.*a_file/res.json'"):
        bench_quality.quality(base, ["simclr"], [0], out=str(tmp_path / "a_file" / "res.json"))
    with pytest.raises(AssertionError, match="trained before"):
        bench_quality.quality(base, ["simclr"], [0], out=str(tmp_path / "new" / "res.json"), log=lambda line: None)
    assert json.loads((tmp_path / "new" / "res.json").read_text())["runs"] == []


def test_reuse_copies_the_runs_and_floors_of_the_same_config_and_trains_the_others(tmp_path, monkeypatch):
    """A tuned table copies what the untuned one measured wherever the sweep chose the preset's value
    (training is reproducible from its seed); a chosen value that differs trains again."""
    base = load_config(None, ["data.num_samples=300"]).to_dict()
    floors = {"pixels_knn_top1": 0.9, "pixels_knn_preprocessing": "stored", "pixels_linear_probe_top1": 0.88,
              "pixels_linear_probe_preprocessing": "centred", "random_init_knn_top1": 0.6, "random_init_linear_probe_top1": 0.8}
    untuned = {"base": portable(base), "seeds": [0], "tune": None, "tuned": {}, "floors": {"0": floors},
               "runs": [run("simclr", 0, 0.91, 0.92), run("moco_v2", 0, 0.85, 0.9)]}
    (tmp_path / "untuned.json").write_text(json.dumps(untuned))
    trained = []

    def train_here(raw, name, seed, address):   # stands in for Ray + DeepSpeed; records what would train
        trained.append((name, seed, from_dict(raw).optim.base_lr))
        return run(name, seed, 0.5, 0.5)

    monkeypatch.setattr(bench_quality, "run_once", train_here)
    out = str(tmp_path / "copy.json")
    state = bench_quality.quality(base, ["simclr", "moco_v2"], [0], out=out, reuse=[str(tmp_path / "untuned.json")],
                                  log=lambda line: None)
    assert trained == [] and state["floors"] == {"0": floors}
    assert state["runs"] == [{**r, "reused_from": "untuned.json"} for r in untuned["runs"]]

    tune = {"metric": "knn_top1", "mode": "max", "space": {"optim.base_lr": {"grid": [0.03, 0.3]}}}
    chosen = {"simclr": {"optim.base_lr": 0.3}, "moco_v2": {"optim.base_lr": 0.3}}  # moco_v2's preset: 0.03
    tuned_out = str(tmp_path / "tuned.json")
    save_state({**load_state(tuned_out, {"base": base, "seeds": [0], "tune": tune}), "tuned": chosen}, tuned_out)
    state = bench_quality.quality(base, ["simclr", "moco_v2"], [0], tune=tune, out=tuned_out,
                                  reuse=[str(tmp_path / "untuned.json")], log=lambda line: None)
    assert trained == [("moco_v2", 0, 0.3)]
    assert state["runs"][0] == {**run("simclr", 0, 0.91, 0.92), "reused_from": "untuned.json"}
    assert state["runs"][1] == run("moco_v2", 0, 0.5, 0.5)

    other = load_config(None, ["data.num_samples=400"]).to_dict()
    with pytest.raises(ConfigError, match="--reuse: '.*untuned.json' was measured from another config"):
        bench_quality.quality(other, ["simclr"], [0], reuse=[str(tmp_path / "untuned.json")])


def test_a_pixel_floor_of_one_preprocessing_is_measured_again_and_the_random_init_one_kept(tmp_path, monkeypatch):
    """A results file whose pixel floor was measured under one preprocessing holds a weaker floor than
    the floor: the table measures the pixels again (the best of the three) and keeps the rest."""
    base = load_config(None, ["data.num_samples=300"]).to_dict()
    old = {"pixels_knn_top1": 0.81, "pixels_linear_probe_top1": 0.83, "random_init_knn_top1": 0.6,
           "random_init_linear_probe_top1": 0.8}
    state = {"base": portable(base), "seeds": [0], "tune": None, "tuned": {}, "floors": {"0": old},
             "runs": [run("simclr", 0, 0.82, 0.86)]}
    out = tmp_path / "old.json"
    out.write_text(json.dumps(state))
    measured = []

    best = {"pixels_knn_top1": 0.83, "pixels_knn_preprocessing": "standardised", "pixels_linear_probe_top1": 0.84,
            "pixels_linear_probe_preprocessing": "stored"}

    def pixels_here(raw, seed):   # stands in for the pixel floor's feature extraction and probes
        measured.append(seed)
        return best

    monkeypatch.setattr(bench_quality, "measure_pixel_floor", pixels_here)
    state = bench_quality.quality(base, ["simclr"], [0], out=str(out), log=lambda line: None)
    assert measured == [0] and state["floors"]["0"] == {"random_init_knn_top1": 0.6, "random_init_linear_probe_top1": 0.8,
                                                        **best}
    assert not next(r for r in state["summary"] if r["method"] == "simclr")["beats_floors"]   # 0.82 < 0.83 now
    again = bench_quality.quality(base, ["simclr"], [0], out=str(out), log=lambda line: None)
    assert measured == [0] and again["floors"] == state["floors"]   # measured once, then kept


def test_a_results_file_from_before_the_probe_was_named_for_its_protocol_reads_with_the_new_names(tmp_path):
    from raycl.quality.harness import read_results

    path = tmp_path / "old.json"
    path.write_text(json.dumps({"runs": [{"method": "simclr", "seed": 0, "knn_top1": 0.8, "linear_top1": 0.85}],
                                "floors": {"0": {"pixels_linear_top1": 0.83, "pixels_linear_preprocessing": "centred",
                                                 "random_init_linear_top1": 0.7, "pixels_knn_top1": 0.81}}}))
    saved = read_results(str(path), "--reuse")
    assert saved["runs"] == [{"method": "simclr", "seed": 0, "knn_top1": 0.8, "linear_probe_top1": 0.85}]
    assert saved["floors"]["0"] == {"pixels_linear_probe_top1": 0.83, "pixels_linear_probe_preprocessing": "centred",
                                    "random_init_linear_probe_top1": 0.7, "pixels_knn_top1": 0.81}
