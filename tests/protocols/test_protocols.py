"""The evaluation protocols' registry and door: raycl's own protocols come from its entry points, no
two report the same key, names are checked before any work, and the frozen protocols on shared
features give what their functions give when called one by one."""
import pytest
import torch

from raycl.errors import ConfigError
from raycl.protocols import Protocol, chosen, protocols
from raycl.protocols.registry import _shared_metrics

OWN = {"knn": True, "rank": True, "linear_probe": True, "logreg": True, "linear_eval": False, "finetune": False,
       "knn_all": False}


def test_raycls_protocols_are_registered_frozen_or_trained_and_report_keys_of_their_own():
    table = protocols()
    assert {name: table[name].frozen for name in OWN} == OWN
    keys = [m for name in OWN for m in table[name].metrics]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    assert all(table[name].metrics[0].startswith(name) or name == "rank" for name in OWN)


def test_names_are_checked_deduplicated_and_a_shared_metric_is_refused():
    assert [p.name for p in chosen("knn, linear_probe,knn")] == ["knn", "linear_probe"]
    with pytest.raises(ConfigError, match=r"--protocol: 'svm' is not one of .*linear_probe.*logreg"):
        chosen(["knn", "svm"])
    with pytest.raises(ConfigError, match="name at least one"):
        chosen("")

    class Echo(Protocol):
        name, metrics = "echo", ("knn_top1",)

    assert _shared_metrics([protocols()["knn"](), Echo()]) == "'knn' and 'echo' ('knn_top1')"


def test_the_frozen_protocols_on_shared_features_equal_their_functions_called_alone(tiny_cfg):
    from raycl.api import evaluate_features
    from raycl.eval import effective_rank, knn_top1, linear_probe
    from raycl.eval.logreg import select_and_fit

    cfg = tiny_cfg()
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g) * 2
    tr_y, te_y = torch.arange(200) % 4, torch.arange(80) % 4
    noise = 3.0  # classes that overlap: a vote at another temperature or k scores otherwise
    tr = centres[tr_y] + noise * torch.randn(200, 16, generator=g)
    te = centres[te_y] + noise * torch.randn(80, 16, generator=g)
    out = evaluate_features(cfg, tr, tr_y, te, te_y, ("knn", "rank", "linear_probe", "logreg"), quiet=True)
    e, seed = cfg.eval, cfg.run.seed
    assert out["knn_top1"] == knn_top1(tr, tr_y, te, te_y, e.knn_k, e.knn_temperature)
    assert out["effective_rank"] == effective_rank(te)
    assert out["linear_probe_top1"] == linear_probe(tr, tr_y, te, te_y, e.linear_epochs, e.linear_lr, seed=seed)
    fitted = select_and_fit(tr, tr_y, te, te_y, seed=seed)
    assert {k: out[k] for k in fitted} == fitted and 0.5 < out["logreg_top1"] <= 1
