"""The linear probe: a softmax classifier by SGD on standardised frozen features, extracted once from
un-augmented images (the kNN monitor's companion; cheaper than ``linear_eval``, which trains on
augmented views)."""

from raycl.eval import linear_probe
from raycl.protocols.base import Protocol, Subject


class LinearProbe(Protocol):
    name = "linear_probe"
    summary = "softmax by SGD on standardised frozen features (eval.linear_epochs at eval.linear_lr, cosine)"
    metrics = ("linear_probe_top1",)

    def evaluate(self, subject: Subject) -> dict:
        tr, tr_y, te, te_y = subject.features()
        e, progress = subject.cfg.eval, subject.ticker("linear probe", "epochs")
        top1 = linear_probe(tr, tr_y, te, te_y, e.linear_epochs, e.linear_lr, seed=subject.cfg.run.seed,
                            progress=progress)  # fmt: skip
        return {"linear_probe_top1": top1}
