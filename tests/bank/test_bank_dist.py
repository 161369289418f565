"""The bank (initialised from features), k-means and sampling give the same results in one process
and on 2 and 3 Ray Train workers, sharded and replicated (real gloo collectives on CPU)."""
import pytest
import torch
import torch.nn.functional as F

from raycl import collectives as dist
from raycl.bank import (
    MemoryBank,
    OnlineKMeans,
    Shard,
    bank_logsumexp,
    inter_negatives,
    inter_positives,
    intra_negatives,
)

N, D, B, K, C = 61, 8, 4, 5, 6      # N not divisible by 2 or 3: uneven shards


def global_batches():
    g = torch.Generator().manual_seed(11)
    for step in range(3):
        index = torch.randperm(N, generator=g)[:12]
        index[5] = index[4]                       # a duplicate within the global batch
        yield index, F.normalize(torch.randn(12, D, generator=g, dtype=torch.float64), dim=1)


def features_source():
    """N - 1 small images under shuffled indices, in blocks of 7 (the last bank row has no sample)."""
    import numpy as np

    from raycl.data import ArraySource

    rng = np.random.default_rng(2)
    return ArraySource(rng.integers(0, 256, (N - 1, 1, 4, 4), dtype=np.uint8), np.zeros(N - 1),
                       index=rng.permutation(N - 1), block_size=7)


def init_from_features(bank):
    """The bank_init: features path: every worker embeds its chunks (raycl.data.rounds), the bank
    keeps its rows; chunks are the same rows on any worker count, so the rows are too."""
    from raycl.data import rounds

    torch.manual_seed(5)
    enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, D)).double()
    with torch.no_grad():
        for index, images in rounds(features_source(), 5, dist.rank(), dist.world_size()):
            v = enc(torch.from_numpy(images).double() / 255) if images is not None else torch.zeros(0, D).double()
            bank.write(torch.as_tensor(index), v)


def dense(bank, mask, collective):
    """[A, N] 0/1 of the selected global rows, whichever shard holds them."""
    out = torch.zeros(mask.shape[0], N, dtype=torch.int64)
    out[:, bank.global_rows] = mask.long()
    return dist.all_reduce_sum(out) if collective else out


def run(layout: str) -> dict:
    r, w = dist.rank(), dist.world_size()
    shard = Shard(r, w) if layout == "sharded" else Shard()
    bank = MemoryBank(N, D, momentum=0.5, shard=shard, seed=3)
    bank.rows = bank.rows.double()
    init_from_features(bank)
    km = OnlineKMeans(C, bank, seed=0)
    km.initialize(iters=10)
    out = {"init_labels": km.all_labels(), "init_centroids": km.centroids.clone(), "steps": []}
    sharded = shard.collective
    b = 12 // w
    for step, (index, v) in enumerate(global_batches()):
        own = slice(r * b, (r + 1) * b)
        a_index, a_v = (index, v) if sharded else (index[own], v[own])
        a_labels = km.labels_of(a_index)
        rec = {}
        for strat in ("hard", "semi_hard", "random", "semi_easy"):
            m = inter_negatives(bank, km, a_v, a_index, a_labels, K, strat, seed=0, step=step)
            rec[strat] = dense(bank, m, sharded)
        intra = intra_negatives(bank, a_index, K, 0, step)
        rec["intra"] = dense(bank, intra, sharded)
        rec["positives"] = inter_positives(bank, km, a_index, a_labels, 0, step)
        q = v[own].clone().requires_grad_(True)
        lse = bank_logsumexp(q, bank, intra, 0.2)
        lse.sum().backward()
        rec["lse"], rec["grad"] = lse.detach(), q.grad
        if not sharded:   # the replicated layout's anchors are each worker's own: gather them
            rec = {k: dist.all_gather_nograd(t) for k, t in rec.items()}
        else:
            rec["lse"], rec["grad"] = dist.all_gather_nograd(rec["lse"]), dist.all_gather_nograd(rec["grad"])
        bank.update(index, v)
        rec["stats"] = km.step(index)
        out["steps"].append(rec)
    out.update(rows=bank.full(), labels=km.all_labels(), centroids=km.centroids.clone(), inertia=km.inertia(),
               nbytes=bank.nbytes())
    return out


def worker(config):
    import ray.train

    res = run(config["layout"])
    if ray.train.get_context().get_world_rank() == 0:
        torch.save(res, config["out"])


def fit(tmp_path, workers, layout):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    out = str(tmp_path / f"{layout}{workers}.pt")
    TorchTrainer(worker, train_loop_config={"layout": layout, "out": out},
                 scaling_config=ScalingConfig(num_workers=workers),
                 run_config=RunConfig(storage_path=str(tmp_path / "st"), name=f"bank-{layout}{workers}")).fit()
    return torch.load(out)


def assert_same(ref, got):
    assert torch.equal(ref["init_labels"], got["init_labels"])
    assert torch.allclose(ref["init_centroids"], got["init_centroids"], atol=1e-6)
    for a, b in zip(ref["steps"], got["steps"]):
        for key in ("hard", "semi_hard", "random", "semi_easy", "intra", "positives"):
            assert torch.equal(a[key], b[key]), key
        assert torch.allclose(a["lse"], b["lse"]) and torch.allclose(a["grad"], b["grad"])
        assert a["stats"] == b["stats"]
    assert torch.allclose(ref["rows"], got["rows"], atol=1e-12) and torch.equal(ref["labels"], got["labels"])
    assert torch.allclose(ref["centroids"], got["centroids"], atol=1e-6)
    assert abs(ref["inertia"] - got["inertia"]) < 1e-6


@pytest.fixture(scope="module")
def reference():
    return run("sharded")          # one process: a single shard holding every row


def test_reference_bank_holds_the_features(reference):
    from raycl.data import rounds

    src = features_source()
    torch.manual_seed(5)
    enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, D)).double()
    data = src.read_all()
    with torch.no_grad():
        expect = F.normalize(enc(torch.from_numpy(data.images).double() / 255), dim=1)
    bank = MemoryBank(N, D, seed=3)
    bank.rows = bank.rows.double()
    init_from_features(bank)
    assert torch.allclose(bank.rows[torch.from_numpy(data.index)], expect, atol=1e-12)
    assert len(list(rounds(src, 5, 1, 3))) == len(list(rounds(src, 5, 0, 3))) == 4   # 12 chunks / 3 workers


def test_reference_selects_exactly_k(reference):
    for rec in reference["steps"]:
        for key in ("hard", "semi_hard", "random", "semi_easy", "intra"):
            assert (rec[key].sum(1) == K).all()


@pytest.mark.parametrize("workers, layout", [(2, "sharded"), (3, "sharded"), (2, "replicated")])
def test_layouts_match_one_process(ray_cluster, tmp_path, reference, workers, layout):
    got = fit(tmp_path, workers, layout)
    assert_same(reference, got)
    if layout == "sharded":   # each worker holds about N / W rows
        assert got["nbytes"] == len(range(0, N, workers)) * D * 8
