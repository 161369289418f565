"""Runs whose worker count changes: the global batch and its micro-batches at each count, the rows
an epoch resumed on another count reads (none lost, none repeated), and the config's checks."""
import numpy as np
import pytest

from raycl.config import load_config
from raycl.data import EpochLoader
from raycl.data.source import ArraySource
from raycl.errors import ConfigError


def test_every_count_in_the_range_keeps_the_global_batch_and_the_samples_per_forward():
    """A contrastive loss draws negatives from one forward pass's samples: at every count the step
    sees G samples in grad_accum forwards of G / grad_accum samples across the workers."""
    cfg = load_config(None, ["distributed.workers=[2, 4]", "data.batch_size=48", "distributed.grad_accum=2"])
    assert list(cfg.worker_counts()) == [2, 3, 4]
    for w in cfg.worker_counts():
        plan = cfg.plan(w)
        assert plan.grad_accum == 2 and plan.micro_batch * w == 24 and plan.workers == w and plan.batch == 48
    assert load_config(None, ["distributed.workers=3", "data.batch_size=48"]).worker_counts() == range(3, 4)


@pytest.mark.parametrize("workers, batch, message", [
    ("[3, 2]", 48, r"min > max \(\[3, 2\]\); write \[2, 3\]"),
    ("[0, 2]", 48, r"minimum must be >= 1"),
    ("[1, 2, 3]", 48, r"expected an integer or \[min, max\]"),
    ("[2, 3]", 33, r"data.batch_size: 33 cannot be split .* 3 can, 2 cannot; batch sizes that keep the whole range: 30, 36"),
])
def test_bad_worker_ranges_are_one_clear_error(workers, batch, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"distributed.workers={workers}", f"data.batch_size={batch}"])


def test_the_spot_recipe_keeps_its_batch_on_every_count_and_the_4096_one_could_not():
    recipe = "recipe:simclr_imagenet_r50_spot"
    local = ["data.dataset=demo", "data.path=null", "data.eval_path=null", "distributed.use_gpu=false",
             "distributed.precision=fp32"]
    cfg = load_config(recipe, local)
    assert list(cfg.worker_counts()) == [6, 7, 8] and cfg.run.max_failures == -1 and cfg.run.checkpoint_every_steps
    assert all(cfg.data.batch_size % (w * cfg.distributed.grad_accum) == 0 for w in cfg.worker_counts())
    # lcm(6, 7, 8) x 4 micro-batches = 672: its multiples nearest 4096
    with pytest.raises(ConfigError, match=r"8 can, 6, 7 cannot; batch sizes that keep the whole range: 4032, 4704"):
        load_config(recipe, local + ["data.batch_size=4096"])


def _parquet(tmp_path, n, rows_per_group):
    from raycl.data.parquet import ParquetSource, encode_png, write_shards

    data = [encode_png(np.full((1, 4, 4), i % 251, np.uint8)) for i in range(n)]
    write_shards(str(tmp_path), np.arange(n), data, np.arange(n) % 10, rows_per_shard=n // 2,
                 row_group_size=rows_per_group)
    return ParquetSource(str(tmp_path), 4, 1)


@pytest.mark.parametrize("kind", ["memory", "parquet"])
def test_an_epoch_resumed_on_other_counts_reads_every_row_once(tmp_path, kind):
    """An epoch of 10 steps of 48 runs 3 steps on 3 workers, 4 on 2, the rest on 4: the rows read,
    over all workers and segments, are the epoch's rows (the padded tail included) exactly once each,
    as in the same epoch run on 3 workers throughout."""
    n, G = 470, 48
    src = ArraySource(np.zeros((n, 1, 2, 2), np.uint8), np.arange(n), block_size=50) if kind == "memory" \
        else _parquet(tmp_path, n, 25)
    segments = [[3, 0], [2, 3], [4, 7]]
    ends = [3, 7, 10]
    seen, per_step = [], {}
    for i, (w, s) in enumerate(segments):
        for r in range(w):
            ld = EpochLoader(src, G, r, w, seed=1, mix_blocks=4, prefetch=2)
            for k, b in enumerate(ld.batches(2, s, segments[:i + 1])):
                step = s + k
                assert step < ends[i]   # each segment's loader runs to the epoch's end; stop it where it stopped
                seen.append(b.index)
                per_step.setdefault(step, []).append(b.index)
                if step + 1 == ends[i]:
                    break
    seen = np.concatenate(seen)
    whole = np.concatenate([np.concatenate([b.index for b in EpochLoader(src, G, r, 3, seed=1, mix_blocks=4).batches(2)])
                            for r in range(3)])
    assert len(seen) == 10 * G == len(whole)
    assert np.array_equal(np.bincount(seen, minlength=n), np.bincount(whole, minlength=n))
    assert set(seen.tolist()) == set(range(n))
    assert all(len(np.concatenate(v)) == G for v in per_step.values())
    if kind == "memory":   # global batches are the same sets whatever the count
        fixed = {s: [] for s in range(10)}
        for r in range(3):
            for s, b in enumerate(EpochLoader(src, G, r, 3, seed=1).batches(2)):
                fixed[s].append(b.index)
        assert all(sorted(np.concatenate(per_step[s]).tolist()) == sorted(np.concatenate(fixed[s]).tolist())
                   for s in range(10))
