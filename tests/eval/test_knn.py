"""`raycl knn`: the k nearest over training features split across workers, merged, equal the single-
process kNN (raycl.eval.knn_predict over one process's features), checked in one process for the merge
and on real Ray workers end to end."""
import json

import pytest
import torch
import torch.nn.functional as F

from raycl.eval.knn import knn_predict, knn_top1, merge_topk, shard_topk, vote


def sharded_ranking(train, labels, queries, k, temperature, shards, classes):
    """What the workers compute: each shard's k nearest, the k-lists of all shards merged, voted."""
    parts = torch.tensor_split(torch.arange(len(train)), shards)
    lists = [shard_topk(queries, train[p], labels[p], k) for p in parts]
    sims, near = torch.cat([s for s, _ in lists], 1), torch.cat([n for _, n in lists], 1)
    return vote(*merge_topk(sims, near, min(k, len(train))), classes, temperature)


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_merged_shard_neighbours_vote_as_one_process_does(shards):
    g = torch.Generator().manual_seed(shards)
    train = F.normalize(torch.randn(500, 16, generator=g), dim=1)
    labels = torch.randint(0, 6, (500,), generator=g)
    queries = F.normalize(torch.randn(90, 16, generator=g), dim=1)
    for k in (1, 20, 200):
        ranked = sharded_ranking(train, labels, queries, k, 0.1, shards, 6)
        assert torch.equal(ranked[:, 0], knn_predict(train, labels, queries, k, 0.1, num_classes=6))
        # top-5 against a hand-written vote over the k nearest of the whole set
        sims, idx = (queries @ train.t()).topk(k, dim=1)
        scores = torch.zeros(90, 6).scatter_add_(1, labels[idx], (sims / 0.1).exp())
        assert torch.equal(ranked, scores.topk(5, dim=1).indices)


def test_a_shard_with_fewer_rows_than_k_pads_and_the_padding_never_votes():
    train = F.normalize(torch.randn(5, 4), dim=1)
    labels = torch.tensor([0, 1, 2, 1, 0])
    queries = F.normalize(torch.randn(3, 4), dim=1)
    sims, near = shard_topk(queries, train[:2], labels[:2], 4)
    assert near[:, 2:].eq(-1).all() and torch.isinf(sims[:, 2:]).all()
    ranked = sharded_ranking(train, labels, queries, 4, 0.1, 3, 3)
    assert torch.equal(ranked[:, 0], knn_predict(train, labels, queries, 4, 0.1, num_classes=3))


@pytest.mark.slow
def test_raycl_knn_on_1_and_3_workers_equals_the_single_process_knn(ray_cluster, tmp_path, capsys):
    from raycl import api
    from raycl.cli import main
    from raycl.data import build_sources
    from raycl.eval import extract
    from raycl.train.checkpoint import load_checkpoint_model
    from test_export import checkpoint

    folder, _, _ = checkpoint(tmp_path, "model.width=8", "data.num_samples=600", "eval.knn_k=20")
    cfg, method = load_checkpoint_model(str(folder))
    train_src, eval_src = build_sources(cfg)
    feats, labels = extract(method.encoder(), train_src)
    queries, query_labels = extract(method.encoder(), eval_src)
    for workers, k in ((1, None), (3, 5)):   # None: the run's eval.knn_k (20)
        expect = knn_top1(feats, labels, queries, query_labels, k or 20, cfg.eval.knn_temperature)
        if k is None:
            assert main(["knn", str(folder), "--workers", str(workers)]) == 0
            out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        else:
            out = api.knn(str(folder), workers, k=k)
        assert out["knn_all_workers"] == workers and out["knn_all_k"] == (k or 20)
        assert out["knn_all_train_rows"] == len(feats) and out["knn_all_queries"] == len(queries)
        assert out["knn_all_top1"] == pytest.approx(expect, abs=1.5 / len(queries)), (workers, out, expect)
        assert out["knn_all_top5"] >= out["knn_all_top1"]
