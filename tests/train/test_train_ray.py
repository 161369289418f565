"""End-to-end training on a real local Ray cluster with real DeepSpeed engines (gloo, CPU)."""
import os
import re

import numpy as np
import pytest
import torch
from curves import tensorboard_scalars, wandb_history, wandb_run_ids
from tiny import tiny_config

from raycl.errors import CheckpointError, DataError
from raycl.train import checkpoint as ck
from raycl.train.checkpoint import load_model_file
from raycl.train.trainer import check_resume, fit


def final_state(result):
    return load_model_file(result.checkpoint.path)["state_dict"]


def assert_same_params(a, b, rtol=1e-5, atol=1e-6):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), rtol=rtol, atol=atol), k


def test_zero_stages_train_alike(ray_cluster, tiny_cfg):
    """2 workers, a few SGD steps: ZeRO-2 partitions the optimizer and the gradients, here with NHWC
    inputs, but must give the parameters that the unpartitioned engine (stage 0) gives on NCHW (to
    1e-4: the layouts sum in different orders), and every parameter moves. (ZeRO-1 and 2 at 2 and 3
    workers against one process, to 1e-5: tests/optim/test_lars_zero.py, with LARS, whose step needs the
    layers ZeRO cuts.)"""
    states = {}
    for stage, layout in ((0, "false"), (2, "true")):
        cfg = tiny_cfg(f"distributed.zero_stage={stage}", f"distributed.channels_last={layout}", "run.epochs=1",
                       f"run.name=zero{stage}")
        res = fit(cfg)
        assert res.metrics["global_step"] == 4 and np.isfinite(res.metrics["loss"])
        assert 0.0 <= res.metrics["knn_top1"] <= 1.0 and res.metrics["images_per_s"] > 0
        states[stage] = final_state(res)
    assert_same_params(states[2], states[0], rtol=1e-4, atol=1e-5)
    from raycl.methods import build_method

    torch.manual_seed(cfg.run.seed)
    init = build_method(cfg, cfg.data.channels).state_dict()
    moved = [k for k, v in init.items() if v.is_floating_point() and "running" not in k and not torch.equal(v, states[2][k])]
    params = [k for k, v in init.items() if v.is_floating_point() and "running" not in k]
    assert moved == params


def relative_distance(a, b) -> float:
    """||a - b|| / ||b|| over every trained parameter (BN running statistics left out)."""
    keys = [k for k in b if b[k].is_floating_point() and "running" not in k]
    num = sum(float(((a[k].float() - b[k].float()) ** 2).sum()) for k in keys)
    return (num / sum(float((b[k].float() ** 2).sum()) for k in keys)) ** 0.5


# In-memory data, global BatchNorm, ZeRO-2 + LARS, 2 micro-batches a step, 6 steps an epoch, 2 epochs.
MID_EPOCH = ["run.epochs=2", "data.batch_size=48", "distributed.grad_accum=2", "distributed.zero_stage=2",
             "optim.name=lars", "optim.base_lr=0.02", "model.sync_bn=true", "eval.every_epochs=100"]


@pytest.fixture(scope="module")
def two_worker_run(ray_cluster, tmp_path_factory):
    """MID_EPOCH trained on 2 workers without a stop: what both mid-epoch resumes must end at."""
    return fit(tiny_config(tmp_path_factory.mktemp("runs"), *MID_EPOCH, "distributed.workers=2", "run.name=w-two"))


def test_stop_at_an_epoch_end_and_resume_equals_uninterrupted_run(ray_cluster, tiny_cfg, two_worker_run):
    """MID_EPOCH stopped after epoch 1 and resumed ends where the run that never stopped does (the
    kNN monitor on in the stopped run only: it changes nothing), and the resumed run's curves
    (TensorBoard, MLflow, wandb) are one run holding each step once."""
    curves = ["run.loggers=[tensorboard, mlflow, wandb]", "eval.every_epochs=1", "run.name=split"]
    first = fit(tiny_cfg(*MID_EPOCH, *curves, "run.stop_after_epochs=1"))
    assert first.metrics["epoch"] == 1
    first_state = final_state(first)
    split_cfg = tiny_cfg(*MID_EPOCH, *curves)
    assert check_resume(split_cfg) is not None
    second = fit(split_cfg)
    whole = final_state(two_worker_run)
    assert second.metrics["epoch"] == 2 and second.metrics["global_step"] == two_worker_run.metrics["global_step"] == 12
    assert_same_params(final_state(second), whole, rtol=0, atol=1e-6)
    from raycl.api import history

    hist = history(second.checkpoint.path)
    assert [h["epoch"] for h in hist] == [1, 2]
    run_dir = os.path.join(split_cfg.run.storage_path, "split")
    tb = tensorboard_scalars(os.path.join(run_dir, "tensorboard"))
    for key in ("loss", "knn_top1", "images_per_s", "data/wait_s", "lr"):
        assert [s for s, _ in tb[key]] == [6, 12] and [v for _, v in tb[key]] == pytest.approx([h[key] for h in hist])
    assert [s for s, _ in tb["step/loss"]] == [2, 4, 6, 8, 10, 12]   # run.log_every=2, 6 steps per epoch
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("raycl").experiment_id])
    logged = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss"))
    assert [s for s, _ in logged] == [6, 12] and [v for _, v in logged] == pytest.approx([h["loss"] for h in hist])
    assert run.data.params["run.name"] == "split"
    assert len(wandb_run_ids(run_dir)) == 1
    assert [s for s, _ in wandb_history(run_dir)["knn_top1"]] == [6, 12]
    # and the interrupted run's first epoch really was shorter than the whole run
    with pytest.raises(AssertionError):
        assert_same_params(first_state, whole, rtol=0, atol=1e-6)
    # a different model under the same run name is refused before any worker starts
    with pytest.raises(CheckpointError, match="does not match this model"):
        check_resume(tiny_cfg(*MID_EPOCH, *curves, "model.width=16"))


def test_stop_mid_epoch_and_resume_equals_uninterrupted_run(ray_cluster, tiny_cfg, two_worker_run):
    """Stopped after step 4 of epoch 1 (a mid-epoch checkpoint), resumed on the same 2 workers, and
    the parameters after epoch 2 equal the run that never stopped."""
    first = fit(tiny_cfg(*MID_EPOCH, "run.name=mid-split", "run.stop_after_steps=4"))
    assert first.metrics["global_step"] == 4 and first.metrics["step_in_epoch"] == 4
    at_stop = final_state(first)
    second = fit(tiny_cfg(*MID_EPOCH, "run.name=mid-split"))
    whole = final_state(two_worker_run)
    assert second.metrics["global_step"] == two_worker_run.metrics["global_step"] == 12
    assert_same_params(final_state(second), whole, rtol=0, atol=1e-6)
    assert any(not torch.equal(v, whole[k]) for k, v in at_stop.items() if v.is_floating_point())


def test_a_run_moved_from_three_workers_to_two_mid_epoch_trains_what_two_workers_would_have(
        ray_cluster, tiny_cfg, two_worker_run):
    """MID_EPOCH: 3 workers train 4 steps, the run resumes on 2 (ZeRO state re-partitioned from
    zero_state.pt), and after 12 steps its parameters are those of a run that trained on 2 workers
    throughout. Every global micro-batch and every sample's views are the same at any count, so only
    summation order differs, and training amplifies that: at the demo's lr a 2-worker and a 3-worker
    run end 4e-3 apart after 12 steps, so the lr here is 0.02, where they end 2.2e-5 apart and the
    moved run 2.2e-5 from the 2-worker one (1.0e-7 from the 3-worker one). Measured failures it
    catches: the first resumed step at the initial lr 1.2e-4; momentum not restored 4.8e-4."""
    first = fit(tiny_cfg(*MID_EPOCH, "distributed.workers=3", "run.name=w-moved", "run.stop_after_steps=4"))
    assert first.metrics["workers"] == 3 and first.metrics["step_in_epoch"] == 4
    at_stop = final_state(first)
    moved = fit(tiny_cfg(*MID_EPOCH, "distributed.workers=2", "run.name=w-moved"))
    assert moved.metrics["global_step"] == two_worker_run.metrics["global_step"] == 12
    two = final_state(two_worker_run)
    d = relative_distance(final_state(moved), two)
    assert d < 6e-5, d
    assert relative_distance(at_stop, two) > 10 * d   # the last 8 steps moved it 30x further


def test_a_run_stopped_on_three_workers_resumes_on_two_mid_epoch(ray_cluster, tiny_cfg, tmp_path):
    """Parquet shards, ZeRO-2 + LARS, batch 48: 3 workers train 2 of epoch 1's 6 steps; the run
    resumes on 2 workers at step 3 with the rows the 3 had not reached (4 x 48 decoded, none again)
    and the same global batch, and its history records the shrink."""
    from raycl.api import history

    url = str(tmp_path / "shards")
    write_digit_shards(url, 288)
    base = ["data.dataset=parquet", f"data.path={url}", "data.num_samples=null", "data.batch_size=48",
            "distributed.zero_stage=2", "optim.name=lars", "run.epochs=2", "run.name=shrink"]
    first = fit(tiny_cfg(*base, "distributed.workers=3", "run.stop_after_steps=2"))
    assert first.metrics["workers"] == 3 and first.metrics["step_in_epoch"] == 2
    # a ZeRO state that cannot be re-partitioned stops the run before any worker starts, and is left as it was
    zero_file = os.path.join(first.checkpoint.path, ck.ZERO_STATE_FILE)
    good = open(zero_file, "rb").read()
    for bad, message in ((b"garbage", "truncated or not a torch file"), (None, "holds 3 parameters, this model trains")):
        if bad is None:
            torch.save({"world_size": 3, "groups": [{"fp32": [torch.zeros(3)], "state": {}}]}, zero_file)
        else:
            open(zero_file, "wb").write(bad)
        before = open(zero_file, "rb").read()
        with pytest.raises(CheckpointError, match=f"zero_state.pt.*{message}"):
            fit(tiny_cfg(*base, "distributed.workers=2"))
        assert open(zero_file, "rb").read() == before
    open(zero_file, "wb").write(good)
    res = fit(tiny_cfg(*base, "distributed.workers=2"))
    assert res.metrics["global_step"] == 12 and res.metrics["workers"] == 2
    h = history(res.checkpoint.path)
    assert [e["epoch"] for e in h] == [1, 2] and h[0]["data/decoded_rows"] == 4 * 48 == 288 - 2 * 48
    state = ck.read_state(res.checkpoint.path)
    assert [(r["from_workers"], r["to_workers"], r["cause"], r["global_step"]) for r in state["restarts"]] == \
        [(3, 2, "shrink", 2)]


def write_digit_shards(url, n, bad_rows=()):
    from raycl.data.demo import load_mnist_5k
    from raycl.data.parquet import encode_png, write_shards

    images, labels = load_mnist_5k()
    data = [encode_png(im) for im in images[:n]]
    for r in bad_rows:
        data[r] = b"garbage"
    write_shards(url, np.arange(n), data, labels[:n], rows_per_shard=n // 2, row_group_size=64)


def test_corrupt_parquet_rows_through_ray(ray_cluster, tiny_cfg, tmp_path):
    url = str(tmp_path / "shards")
    write_digit_shards(url, 256, bad_rows=(5, 200))
    base = ["data.dataset=parquet", f"data.path={url}", "data.num_samples=null", "run.epochs=1"]
    with pytest.raises(DataError, match=r"row index (5|200) .*part-0000[01]\.parquet") as e:
        fit(tiny_cfg(*base, "run.name=corrupt-error"))
    # what the console kept out of sight: the worker's traceback and the controller's report of it
    assert e.value.details and "Traceback (most recent call last)" in open(e.value.details).read()
    res = fit(tiny_cfg(*base, "data.on_corrupt=skip", "run.name=corrupt-skip"))
    assert res.metrics["corrupt_skipped"] == 2 and np.isfinite(res.metrics["loss"])


def test_a_corrupt_shard_run_through_the_cli_prints_one_error_line(tmp_path):
    """A new user's view: the error as one line (with where the full output is), not 70 lines of
    tracebacks from the worker and the controller."""
    import subprocess
    import sys

    from raycl.api import demo_config_path

    url = str(tmp_path / "shards")
    write_digit_shards(url, 256, bad_rows=(5, 200))
    p = subprocess.run([sys.executable, "-m", "raycl", "train", demo_config_path(), "data.dataset=parquet",
                        f"data.path={url}", "data.num_samples=null", "data.batch_size=64", "model.width=8",
                        "run.epochs=1", "run.checkpoint_every=1", f"run.storage_path={tmp_path / 'runs'}"],
                       capture_output=True, text=True, timeout=600)
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("raycl: error: ")]
    assert p.returncode == 2 and len(errors) == 1 and len(lines) < 10, "\n".join(lines)
    assert re.search(r"corrupt image bytes at row index (5|200) .*\(the workers' full output: .*failure\.log\)",
                     errors[0])
    assert "Traceback" not in p.stdout + p.stderr


def test_data_the_driver_sees_but_a_worker_cannot_is_one_error_naming_its_node(ray_cluster, tiny_cfg):
    """memory:// lives in one process: the driver finds the shards, the workers do not (as a local path
    on a node that does not mount it). The workers' DataError reaches the caller as itself."""
    from raycl import api

    url = "memory://raycl-worker-check/shards"
    write_digit_shards(url, 128)
    cfg = tiny_cfg("data.dataset=parquet", f"data.path={url}", "data.num_samples=null", "run.epochs=1",
                   "run.name=memory-path")
    with pytest.raises(DataError, match=r"no \.parquet shards under 'memory://raycl-worker-check/shards' on the "
                                        r"node of this worker \([0-9.]+\), though the driver read it"):
        api.train(cfg)


def test_a_row_group_unreadable_on_one_worker_fails_the_run_naming_it_without_a_hang(ray_cluster, tiny_cfg, tmp_path):
    """Only one of the two workers reads the broken row group; the other goes on into the step's
    collectives. Ray Train must stop both and report the reader's error (or, with skip, train on)."""
    from test_loader import corrupt_row_group

    url = str(tmp_path / "shards")
    write_digit_shards(url, 256)
    corrupt_row_group(os.path.join(url, "part-00001.parquet"), 0)
    base = ["data.dataset=parquet", f"data.path={url}", "data.num_samples=null", "run.epochs=1"]
    with pytest.raises(DataError, match=r"part-00001\.parquet' row group 0 cannot be read"):
        fit(tiny_cfg(*base, "run.name=unreadable-error"))
    res = fit(tiny_cfg(*base, "data.on_corrupt=skip", "run.name=unreadable-skip"))
    assert res.metrics["corrupt_skipped"] == 64 and np.isfinite(res.metrics["loss"])


def write_big_image_shards(url, n):
    """n rows stored as 16 px RGB PNGs (a few hundred bytes each) that decode to 224 px: the decoded
    dataset is n x 150 KB while the shards stay small."""
    from raycl.data.parquet import encode_png, write_shards

    rng = np.random.default_rng(0)
    data = [encode_png(rng.integers(0, 255, (3, 16, 16), dtype=np.uint8)) for _ in range(n)]
    write_shards(url, np.arange(n), data, np.arange(n) % 10, rows_per_shard=1000, row_group_size=100)


def test_worker_memory_does_not_grow_with_the_dataset(ray_cluster, tiny_cfg, tmp_path):
    """One epoch with the kNN monitor on 4,096 rows of 3 x 224 x 224 against the same run on 512
    rows: a worker's RSS rise over the epoch (``data/rss_rise_mb``: peak this epoch minus the RSS it
    started from, engine set-up excluded) grows by less than 250 MB, under half of the 538 MB that
    the 3,584 extra rows take decoded as uint8 (a loader that decoded the dataset, or a held-out split
    or monitor bank kept decoded, adds that much or 4x as float; a decoding loader measured ~1 GB at
    4,000 rows). The rise itself varies by up to ~110 MB from run to run at the same size (which of
    the decode threads' malloc arenas keeps freed pages), hence the margin. No blur or colour jitter:
    they are half of each step's time at 224 px and hold nothing across steps."""
    rises = {}
    for n in (512, 4096):
        url = str(tmp_path / f"big{n}")
        write_big_image_shards(url, n)
        res = fit(tiny_cfg("data.dataset=parquet", f"data.path={url}", "data.num_samples=null", "data.image_size=224",
                           "data.channels=3", "model.stem=imagenet", "model.width=4", "run.epochs=1",
                           "data.batch_size=64", "data.blur_p=0", "data.jitter_p=0", f"run.name=mem{n}"))
        assert res.metrics["data/decoded_rows"] == -(-n // 64) * 64 and "knn_top1" in res.metrics
        assert res.metrics["data/peak_rss_mb"] >= res.metrics["data/rss_rise_mb"] > 0
        rises[n] = res.metrics["data/rss_rise_mb"]
    print("worker RSS rise over the epoch, MB", rises)
    assert rises[4096] - rises[512] < 250, rises


def counted_train_loop(config: dict) -> None:
    """``train_loop``, counting the config validations it makes (``check_across`` ends every one) and
    noting what it was given, in a file per worker beside the run."""
    import json

    import ray.train

    import raycl.config.model
    from raycl.train.storage import run_dir
    from raycl.train.worker import train_loop

    calls = []
    original = raycl.config.model.check_across
    raycl.config.model.check_across = lambda cfg: (calls.append(1), original(cfg))[1]
    try:
        train_loop(config)
    finally:
        raycl.config.model.check_across = original
    cfg, rank = config["config"], ray.train.get_context().get_world_rank()
    with open(os.path.join(run_dir(cfg), f"validations-{rank}.json"), "w") as fh:
        json.dump({"validations": len(calls), "given": type(cfg).__name__}, fh)


def test_a_config_is_validated_once_on_its_way_from_the_command_line_to_the_workers(ray_cluster, tmp_path, monkeypatch):
    import json

    import raycl.config.model
    import raycl.train.trainer
    from raycl.cli import main

    calls = []
    original = raycl.config.model.check_across
    monkeypatch.setattr(raycl.config.model, "check_across", lambda cfg: (calls.append(1), original(cfg))[1])
    monkeypatch.setattr(raycl.train.trainer, "train_loop", counted_train_loop)
    argv = ["train", "recipe:demo", "data.num_samples=128", "data.batch_size=64", "model.width=8",
            "model.proj_hidden_dim=32", "model.proj_out_dim=16", "run.epochs=1", "run.checkpoint_every=1",
            "run.name=once", "distributed.torch_threads=1", "optim.warmup_epochs=0", f"run.storage_path={tmp_path}"]
    assert main(argv) == 0
    assert len(calls) == 1  # the driver: read, overridden, validated, resolved, its data found, once
    workers = [json.loads(p.read_text()) for p in sorted((tmp_path / "once").glob("validations-*.json"))]
    assert workers == [{"validations": 0, "given": "Config"}] * 2
