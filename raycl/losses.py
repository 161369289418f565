"""Pure loss functions: tensors in, scalar out; no state, no globals, no collectives.

Each docstring cites the equation it implements. Distributed callers pass gathered tensors in
(see ``raycl.collectives.all_gather``) and pick their local anchors with ``anchor_rows``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, anchor_rows: slice | None = None) -> torch.Tensor:
    """SimCLR's NT-Xent (Chen et al. 2020, eq. 1), averaged over the 2N anchors.

        l(i, j) = -log exp(sim(z_i, z_j)/tau) / sum_{k != i} exp(sim(z_i, z_k)/tau)

    over the 2N embeddings [z1; z2], where (i, j) are the two views of one image and sim is the
    cosine similarity. ``anchor_rows`` (a slice of 0..N-1) restricts the anchors to those rows of
    both views while every embedding stays a negative: the per-worker share of the global loss.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    rows = torch.arange(n, device=z.device)[anchor_rows if anchor_rows is not None else slice(None)]
    anchors = torch.cat([rows, rows + n])
    positives = torch.cat([rows + n, rows])
    logits = z[anchors] @ z.t() / temperature
    logits[torch.arange(len(anchors), device=z.device), anchors] = float("-inf")  # k != i
    return F.cross_entropy(logits, positives)


def info_nce(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE (van den Oord et al. 2018; MoCo, He et al. 2020, eq. 1), mean over the B queries:

        L_q = -log exp(q.k+/tau) / (exp(q.k+/tau) + sum_{k-} exp(q.k-/tau))

    query, positive: [B, D]; negatives: [K, D] shared by all queries (a queue) or [B, K, D] per
    query (sampled from a bank). Inputs are used as given: pass L2-normalised embeddings.
    """
    return margin_nce(query, positive, negatives, 0.0, temperature)


def margin_nce(
    query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, margin: float, temperature: float
) -> torch.Tensor:
    """MarginNCE (InterCLR, Xie et al. 2022, eq. 3): InfoNCE whose positive logit is (q.k+ - m)/tau;
    the negatives' logits are unchanged. ``margin=0`` is InfoNCE. Shapes as in ``info_nce``."""
    pos = (query * positive).sum(dim=1, keepdim=True) - margin
    if negatives.dim() == 2:
        neg = query @ negatives.t()
    else:
        neg = torch.einsum("bd,bkd->bk", query, negatives)
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(query), dtype=torch.long, device=query.device))


def margin_nce_lse(
    query: torch.Tensor, positive: torch.Tensor, neg_logsumexp: torch.Tensor, margin: float, temperature: float
) -> torch.Tensor:
    """MarginNCE (InterCLR eq. 3) with the negatives given as ``neg_logsumexp`` [B] =
    log sum_k exp(q.k- / tau), as a sharded memory bank provides them:

        L_q = -log exp((q.k+ - m)/tau) / (exp((q.k+ - m)/tau) + exp(neg_logsumexp))

    Equal to ``margin_nce`` with the explicit negatives."""
    pos = ((query * positive).sum(dim=1) - margin) / temperature
    return (torch.logaddexp(pos, neg_logsumexp) - pos).mean()


def _positive_mask(labels: torch.Tensor) -> torch.Tensor:
    same = labels.view(-1, 1) == labels.view(1, -1)
    return same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)


def tcl_per_anchor(
    z: torch.Tensor, labels: torch.Tensor, temperature: float, k1: float, k2: float, anchors: slice | None = None
) -> torch.Tensor:
    """L_i of TCL for every anchor i (0 where i has no positive); see ``tcl_loss``. ``anchors``
    restricts the rows computed (a worker's own views) while all of ``z`` stays in the sums."""
    rows = slice(None) if anchors is None else anchors
    sim = z[rows] @ z.t()
    pos = _positive_mask(labels)[rows]
    neg = (labels.view(-1, 1) != labels.view(1, -1))[rows]
    logits = sim / temperature
    # log D(z_i) by log-sum-exp over three weighted terms, stable for large k1 and small tau.
    terms = torch.cat(
        [
            logits.masked_fill(~pos, float("-inf")),
            (-sim + math.log(k1) if k1 > 0 else torch.full_like(sim, float("-inf"))).masked_fill(~pos, float("-inf")),
            (logits + math.log(k2) if k2 > 0 else torch.full_like(sim, float("-inf"))).masked_fill(~neg, float("-inf")),
        ],
        dim=1,
    )
    log_d = torch.logsumexp(terms, dim=1, keepdim=True)
    n_pos = pos.sum(1)
    per = -((logits - log_d) * pos).sum(1) / n_pos.clamp(min=1)
    return torch.where(n_pos > 0, per, torch.zeros_like(per))


def tcl_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float, k1: float, k2: float) -> torch.Tensor:
    """Tuned Contrastive Learning (Animesh & Chandraker, eq. 4.1-4.3), mean over anchors with a positive:

        L_i = -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p/tau) / D(z_i) )
        D(z_i) = sum_{p' in P(i)} exp(z_i.z_p'/tau) + k1 sum_{p' in P(i)} exp(-z_i.z_p')
                 + k2 sum_{n in N(i)} exp(z_i.z_n/tau)

    z: [V, D] L2-normalised embeddings of all views; labels: [V], equal labels are positives (the
    views of one image share a label; with class labels, same-class samples too). Note the k1
    term has no temperature. k1 = 0, k2 = 1 gives SupCon's L_out.
    """
    per = tcl_per_anchor(z, labels, temperature, k1, k2)
    has = _positive_mask(labels).any(1)
    return per[has].mean()


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss L_out (Khosla et al. 2020, eq. 2), mean over anchors with a positive:

        L_i = -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p/tau) / sum_{a != i} exp(z_i.z_a/tau) )

    z: [V, D] L2-normalised embeddings; labels: [V]. With one positive per anchor it is NT-Xent.
    """
    return tcl_loss(z, labels, temperature, k1=0.0, k2=1.0)


def ddm_loss(weak_logits: torch.Tensor, strong_logits: torch.Tensor) -> torch.Tensor:
    """CLSA's distributional divergence (Wang & Qi 2021, eq. 6), mean over the batch:

        L_D = -1/B sum_i sum_c p(c | z'_i) log p(c | z''_i)

    where each row of logits is sim(z, c)/tau over the same candidates (positive key + queue),
    p = softmax. The weak distribution is the target: no gradient flows through ``weak_logits``.
    """
    target = F.softmax(weak_logits.detach(), dim=1)
    return -(target * F.log_softmax(strong_logits, dim=1)).sum(1).mean()


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """D(p, z) = -cos(p, sg(z)) averaged over the batch (SimSiam, Chen & He 2021, eq. 1; SimCLIC's
    D with the stop-gradient sg on the target). Minimum -1."""
    return -F.cosine_similarity(p, z.detach(), dim=1).mean()
