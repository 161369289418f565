"""L2-regularised multinomial logistic regression on standardised frozen features, its strength C
chosen on a held-out fifth of the training rows: the transfer protocol of Kornblith et al. (2019)
that SimCLIC's evaluation follows (raycl.eval.logreg)."""

from raycl.eval.logreg import select_and_fit
from raycl.protocols.base import Protocol, Subject


class LogisticRegression(Protocol):
    name = "logreg"
    summary = "L2-regularised logistic regression (L-BFGS), C chosen on held-out training rows (Kornblith et al.)"
    metrics = ("logreg_top1", "logreg_c", "logreg_val_top1")

    def evaluate(self, subject: Subject) -> dict:
        tr, tr_y, te, te_y = subject.features()
        progress = subject.ticker("logistic regression", "values of C")
        fitted = select_and_fit(tr, tr_y, te, te_y, seed=subject.cfg.run.seed, progress=progress)
        return fitted or dict.fromkeys(self.metrics)
