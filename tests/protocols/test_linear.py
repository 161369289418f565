"""`raycl linear`: a linear head on a checkpoint's frozen backbone, trained by raycl's own worker loop
as the method linear_eval. In one process: the backbone stays bit-identical (parameters and BatchNorm
statistics) while the head learns; on Ray: 1, 2 and 3 workers train the same head."""
import json

import pytest
import torch

from raycl.config import from_dict
from raycl.errors import ConfigError
from raycl.methods import MethodBatch, build_method
from test_export import checkpoint


def linear_cfg(tmp_path, *overrides, pretrained=("model.width=8",)):
    from raycl.api import linear_config

    folder, cfg, method = checkpoint(tmp_path, *pretrained, "data.num_samples=256", "data.batch_size=48",
                                     "distributed.workers=1", f"run.storage_path={tmp_path}/runs")
    return linear_config(str(folder), overrides=list(overrides)), method


def test_the_backbone_is_frozen_and_the_head_learns(tmp_path):
    cfg, pretrained = linear_cfg(tmp_path)
    assert cfg.method.name == "linear_eval" and cfg.method.checkpoint.endswith("model.pt")
    model = build_method(cfg, 1)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    assert all(torch.equal(before[k], v) for k, v in pretrained.backbone.state_dict().items())
    head = model.head.weight.detach().clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"head.weight", "head.bias"}
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        model.train()
        assert not model.backbone.training            # BatchNorm keeps its pre-trained statistics
        x, y = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
        loss, logs = model(MethodBatch([x], torch.arange(16), y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())
    assert not torch.equal(head, model.head.weight) and 0 <= logs["train_top1"] <= 1
    scores = model.held_out_scores().eval()
    scores.train()                                    # as evaluation restores modes afterwards
    assert not model.backbone.training


def test_a_stage_of_the_resnet_can_be_probed_and_a_missing_one_is_one_line(tmp_path):
    cfg, _ = linear_cfg(tmp_path, "method.layer=layer2")
    model = build_method(cfg, 1).eval()
    assert model.head.in_features == 16                # width 8: layer2 has 16 channels
    assert model.held_out_scores()(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    raw = cfg.to_dict()
    raw["method"]["layer"] = "layer5"
    with pytest.raises(ConfigError, match=r"method.layer: 'layer5' is not a layer of resnet18; one of output, "
                                          r"layer1, layer2, layer3, layer4"):
        from_dict(raw)
    raw["method"]["layer"], raw["method"]["checkpoint"] = "output", None
    with pytest.raises(ConfigError, match="method.checkpoint: linear_eval needs the pre-trained checkpoint"):
        from_dict(raw)


def test_a_checkpoint_that_does_not_fit_the_model_section_is_one_line(tmp_path):
    from raycl.errors import CheckpointError

    cfg, _ = linear_cfg(tmp_path, "model.width=16")
    with pytest.raises(CheckpointError, match="does not fit this config's model section"):
        build_method(cfg, 1)


@pytest.mark.slow
def test_linear_evaluation_on_1_and_3_workers_trains_the_same_head(ray_cluster, tmp_path, capsys):
    from raycl import api
    from raycl.cli import main
    from raycl.protocols.linear_eval import LinearEvaluation
    from raycl.train.checkpoint import load_model_file

    folder, _, pretrained = checkpoint(tmp_path, "model.width=8", "data.num_samples=256", "data.batch_size=48",
                                       f"run.storage_path={tmp_path}/runs", "run.name=pre")
    heads, tops = [], []
    for workers in (1, 3):   # 3: shards of unequal size (256 rows, batch 48 = 16 a worker)
        assert main(["linear", str(folder), f"distributed.workers={workers}", "run.epochs=2",
                     f"run.name=lin{workers}", "distributed.torch_threads=1", "run.log_every=100"]) == 0
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        last = api.history(out["linear_eval_checkpoint"])[-1]
        assert last["workers"] == workers and last["epoch"] == 2
        assert 0 <= out["linear_eval_top1"] <= out["linear_eval_top5"] <= 1 and set(out) == set(LinearEvaluation.metrics)
        assert out["best_linear_eval_top1"] >= out["linear_eval_top1"] and out["linear_eval_best_epoch"] in (1, 2)
        state = load_model_file(out["linear_eval_checkpoint"])["state_dict"]
        heads.append(state["head.weight"])
        tops.append(out["linear_eval_top1"])
        backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        assert all(torch.equal(backbone[k], v) for k, v in pretrained.backbone.state_dict().items())
    for head in heads[1:]:
        assert torch.allclose(head, heads[0], atol=1e-5), (head - heads[0]).abs().max()
    assert max(tops) - min(tops) <= 1 / 51   # the held-out 20% of 256 rows: one row either way at most


@pytest.mark.parametrize("recipe", ["moco_imagenet", "simclr_imagenet", "fmnist"])
def test_each_linear_recipe_makes_a_valid_linear_evaluation(tmp_path, recipe):
    import pathlib

    from raycl.api import linear_config

    path = pathlib.Path(__file__).resolve().parents[2] / "raycl" / "recipes" / "linear" / f"{recipe}.yaml"
    folder, _, _ = checkpoint(tmp_path, "model.width=8", "distributed.workers=2", f"run.storage_path={tmp_path}")
    cfg = linear_config(str(folder), f"recipe:linear/{recipe}", ["distributed.workers=2"])  # named as users do
    as_written = __import__("yaml").safe_load(path.read_text())
    assert cfg.method.name == "linear_eval" and cfg.model.width == 8          # the model is the checkpoint's
    assert cfg.optim.base_lr == as_written["optim"]["base_lr"] and cfg.run.epochs == as_written["run"]["epochs"]
    assert cfg.optim.weight_decay == 0.0 and cfg.data.batch_size == as_written["data"]["batch_size"]


def test_the_label_subset_is_class_balanced_seeded_written_and_trained_on(tmp_path):
    import numpy as np

    from raycl.api import finetune_config, label_subset
    from raycl.data import build_sources

    folder, pre_cfg, pretrained = checkpoint(tmp_path, "model.width=8", "data.num_samples=400",
                                             f"run.storage_path={tmp_path}/runs", "run.name=pre")
    train, _ = build_sources(pre_cfg)
    labels = np.concatenate([train.labels_of(b) for b in range(len(train.block_sizes))])
    rows = label_subset(pre_cfg, 0.1, seed=0)
    for c in np.unique(labels):       # round(10 %) of every class, drawn within the class
        assert (labels[rows] == c).sum() == max(1, round(0.1 * (labels == c).sum()))
    assert np.array_equal(rows, label_subset(pre_cfg, 0.1, seed=0))
    assert not np.array_equal(rows, label_subset(pre_cfg, 0.1, seed=1))
    with pytest.raises(ConfigError, match=r"--label-fraction: expected a fraction in \(0, 1\], got 1.5"):
        label_subset(pre_cfg, 1.5, 0)
    with pytest.raises(ConfigError, match="fewer than the 10 classes"):
        label_subset(pre_cfg, 0.01, 0)

    tuned = finetune_config(str(folder), 0.1)
    scratch = finetune_config(str(folder), 0.1, from_scratch=True)
    assert tuned.data.rows == scratch.data.rows and tuned.data.rows.endswith("pre-rows-0.1-seed0.txt")
    written = np.loadtxt(tuned.data.rows, dtype=np.int64, comments="#")
    assert np.array_equal(written, rows) and len(build_sources(tuned)[0]) == len(rows)
    assert (tuned.run.name, scratch.run.name) == ("pre-finetune-0.1", "pre-scratch-0.1")
    model, baseline = build_method(tuned, 1), build_method(scratch, 1)
    expect = pretrained.backbone.state_dict()
    assert all(torch.equal(v, expect[k]) for k, v in model.backbone.state_dict().items())
    assert not all(torch.equal(v, expect[k]) for k, v in baseline.backbone.state_dict().items())
    model.train()
    assert model.backbone.training and all(p.requires_grad for p in model.backbone.parameters())


def test_a_rows_file_that_is_not_a_list_of_training_rows_is_one_line(tmp_path):
    from raycl.data import build_sources
    from raycl.errors import DataError

    cfg, _ = linear_cfg(tmp_path)
    for text, what in (("1\n2\nx\n", "not a list of row numbers"), ("1\n1\n", "distinct row numbers"),
                       ("5000\n", "distinct row numbers in 0..255")):
        (tmp_path / "rows.txt").write_text(text)
        raw = cfg.to_dict()
        raw["data"]["rows"] = str(tmp_path / "rows.txt")
        with pytest.raises(DataError, match=what):
            build_sources(from_dict(raw))


@pytest.mark.slow
def test_finetune_and_its_from_scratch_baseline_train_on_ray_on_the_same_subset(ray_cluster, tmp_path, capsys):
    from raycl import api
    from raycl.cli import main

    folder, _, _ = checkpoint(tmp_path, "model.width=8", "data.num_samples=512", "data.batch_size=32",
                              f"run.storage_path={tmp_path}/runs", "run.name=pre")
    runs = []
    for extra in ([], ["--from-scratch"]):
        assert main(["finetune", str(folder), "--label-fraction", "0.25", *extra, "run.epochs=2",
                     "distributed.workers=2", "distributed.torch_threads=1", "run.log_every=100"]) == 0
        runs.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    for out in runs:   # 25 % of the 409 training digits is ~102 rows: 4 steps of 32 an epoch
        last = api.history(out["finetune_checkpoint"])[-1]
        assert last["epoch"] == 2 and last["global_step"] == 8 and 0 <= out["finetune_top1"] <= out["finetune_top5"] <= 1
        assert out["best_finetune_top1"] is not None and "linear_eval_top1" not in last


@pytest.mark.slow
def test_bench_linear_measures_both_runs_on_the_same_workers(ray_cluster, tiny_cfg, tmp_path, capsys):
    from raycl.api import history
    from raycl.cli import main

    (tmp_path / "b.yaml").write_text(tiny_cfg("run.log_every=100").to_yaml())
    assert main(["bench", "linear", "--config", str(tmp_path / "b.yaml")]) == 0
    line, payload = capsys.readouterr().out.strip().splitlines()[-2:]
    out = json.loads(payload)
    runs = sorted((tmp_path / "runs").glob("bench-linear-*"))
    assert [r.name.endswith("-linear") for r in runs] == [False, True]   # pre-training, then its linear run
    rates = []
    for run in runs:
        (checkpoint_dir,) = run.glob("checkpoint_*/")
        (epoch,) = history(str(checkpoint_dir))
        rates.append(epoch["images_per_s"])
    assert out["pretraining_images_per_s"] == round(rates[0], 1) and out["linear_images_per_s"] == round(rates[1], 1)
    assert out["linear_over_pretraining"] == round(rates[1] / rates[0], 2) and out["workers"] == 2
    assert line.startswith("2 workers, batch 64: pre-training (simclr)") and line.endswith("x)")


def test_a_diverged_head_is_named_and_a_sane_one_is_not():
    from raycl.methods.linear_eval import divergence

    assert divergence([{"loss": 2.1}, {"loss": 0.9}], 10) is None
    assert divergence([{"loss": 2.1}, {"loss": 264215.0}], 10).startswith("the linear head diverged")
    assert "log(10) = 2.30" in divergence([{"loss": float("nan")}], 10)
    assert divergence([{"loss": 6.9}], 10) is None and divergence([], 10) is None   # 3 log(10) = 6.91


@pytest.mark.slow
def test_a_briefly_trained_backbone_gets_a_standardised_head_and_a_bare_one_is_reported_diverged(
        ray_cluster, tmp_path, capsys):
    """The case that once went silently wrong: ResNet-18 with torchvision's stem pre-trained one epoch
    on 512 digits; its BatchNorm running statistics give activations a bare SGD head diverges on (loss
    in the hundreds of thousands, top-1 at chance) while the kNN monitor finds the features good."""
    from raycl import api
    from raycl.cli import main
    from raycl.config import load_config

    pre = api.train(load_config("recipe:demo", [
        "data.num_samples=512", "model.stem=imagenet", "model.width=64", "run.epochs=1", "run.checkpoint_every=1",
        f"run.storage_path={tmp_path}", "run.name=brief", "distributed.torch_threads=1", "run.log_every=100"]))
    capsys.readouterr()
    base = ["linear", str(tmp_path / "brief"), "distributed.torch_threads=1", "run.log_every=100"]
    # 10 epochs of 8 steps: the standardised head reaches about the kNN monitor's figure (0.41 vs 0.42)
    assert main([*base, "run.epochs=10", "run.name=standardised"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["linear_eval_diverged"] is None and out["best_linear_eval_top1"] > max(0.3, pre["knn_top1"] - 0.1), (out, pre)
    with pytest.raises(SystemExit) as exit_code:  # the bare head's loss is in the hundreds of thousands by epoch 2
        main([*base, "run.epochs=2", "method.standardize=false", "run.name=bare"])
    printed = capsys.readouterr()
    bare = json.loads(printed.out.strip().splitlines()[-1])
    assert exit_code.value.code == 1 and bare["linear_eval_diverged"].startswith("the linear head diverged")
    assert bare["linear_eval_top1"] is None and bare["best_linear_eval_top1"] is None
    assert "the linear head diverged" in printed.err and "top-1:" not in printed.out
