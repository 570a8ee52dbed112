"""The game's losses, after Triple-GAN (Li et al. 2017) and its official v2 code (Wu et al. 2019).

With ``s = D(x, y)`` a pair's score, ``p_c(y | x)`` C's merged leaf distribution (a path through
the tree) and ``alpha`` the weight of C's pairs in D's utility:

- D: ``real(s(x_l, y_l)) + (1 - alpha) fake(s(G(z, y), y))
  + alpha E_x sum_y p_c(y|x) fake(s(x, y))`` (C's pairs *integrated* over its distribution, the
  official code's ``int`` mode);
- G: ``gen(s(G(z, y), y))``;
- C: its own share of the adversarial game, ``E_x sum_y p_c(y|x) gen(s(x, y))``, plus the terms
  of :mod:`.game` (cross-entropy on labels, R_P, the unlabelled-data term).

``real``/``fake``/``gen`` are the hinge loss (Lim & Ye 2017; the official v2 code) or the
non-saturating BCE loss (v1), chosen by ``gan.loss``.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from models.tree.merge import TreeTensors, conditional_log_probs


class PairLoss:
    """``real``/``fake``/``gen`` terms of the hinge or BCE GAN loss on pair scores."""

    def __init__(self, kind: str) -> None:
        if kind not in ("hinge", "bce"):
            raise ValueError(f"gan.loss must be 'hinge' or 'bce' in triple mode, got {kind!r}")
        self.kind = kind

    def real(self, s: Tensor, weights: Tensor | None = None) -> Tensor:
        """D's loss on pairs it should call real (mean, or weighted mean)."""
        loss = F.relu(1.0 - s) if self.kind == "hinge" else F.softplus(-s)
        if weights is None:
            return loss.mean()
        return (weights * loss).sum() / weights.sum().clamp_min(1.0)

    def fake(self, s: Tensor) -> Tensor:
        """D's loss on pairs it should call fake, element-wise (callers weight and average)."""
        return F.relu(1.0 + s) if self.kind == "hinge" else F.softplus(s)

    def gen(self, s: Tensor) -> Tensor:
        """A player's loss for wanting its pairs called real, element-wise."""
        return -s if self.kind == "hinge" else F.softplus(-s)


def discriminator_loss(
    pair: PairLoss,
    s_real: Tensor,
    s_gen: Tensor,
    s_all_u: Tensor,
    p_c: Tensor,
    alpha: float,
    real_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """D's loss and its terms.

    Args:
        pair: the GAN loss.
        s_real: ``[B_r]`` scores of real pairs (labelled, and teacher-labelled if configured).
        s_gen: ``[B_g]`` scores of G's pairs.
        s_all_u: ``[B_u, n_leaves]`` scores of each unlabelled image with every leaf.
        p_c: ``[B_u, n_leaves]`` C's leaf distribution on those images (no gradient).
        alpha: weight of C's pairs; G's pairs get ``1 - alpha``.
        real_weights: ``[B_r]`` weight of each real pair (None: all 1).
    """
    real = pair.real(s_real, real_weights)
    fake_g = pair.fake(s_gen).mean()
    fake_c = (p_c.detach() * pair.fake(s_all_u)).sum(dim=1).mean()
    loss = real + (1.0 - alpha) * fake_g + alpha * fake_c
    return loss, {
        "d_loss": loss,
        "d_real": s_real.mean(),
        "d_gen": s_gen.mean(),
        "d_c_pairs": (p_c.detach() * s_all_u).sum(dim=1).mean(),
    }


def classifier_adversarial(pair: PairLoss, p_c: Tensor, s_all_u: Tensor) -> Tensor:
    """C's adversarial term: ``E_x sum_y p_c(y|x) gen(D(x, y))``; D's scores are constants."""
    return (p_c * pair.gen(s_all_u.detach())).sum(dim=1).mean()


def masked_path_nll(
    logits: list[Tensor], level_labels: Tensor, mask: Tensor, tt: TreeTensors, weights: list[float]
) -> Tensor:
    """Hierarchical cross-entropy towards ``level_labels`` on the rows ``mask`` keeps.

    Averaged over all rows (FixMatch's normalisation: fewer confident rows, a smaller term).
    """
    cond = conditional_log_probs(logits, tt)
    nll = sum(
        -w * c.gather(1, level_labels[:, lv : lv + 1]).squeeze(1)
        for lv, (c, w) in enumerate(zip(cond, weights, strict=True))
    )
    return (mask * nll).mean()


def pseudo_label(
    strong_logits: list[Tensor],
    teacher_log_p: Tensor,
    confidence: float,
    tt: TreeTensors,
    weights: list[float],
) -> tuple[Tensor, Tensor]:
    """FixMatch's term: the teacher's confident leaf (weak view) as the target on a strong view.

    Returns the term and the share of rows confident enough to count.
    """
    conf, leaf = teacher_log_p.max(dim=1)
    mask = (conf.exp() >= confidence).float()
    return masked_path_nll(strong_logits, tt.leaf_paths[leaf], mask, tt, weights), mask.mean()


def consistency(p_student: Tensor, p_teacher: Tensor) -> Tensor:
    """Mean-teacher consistency: squared distance of leaf distributions, summed over leaves."""
    return ((p_student - p_teacher.detach()) ** 2).sum(dim=1).mean()


def entropy(log_p: Tensor) -> Tensor:
    """Mean entropy of leaf distributions given as log-probabilities ``[B, n_leaves]``."""
    return -(log_p.exp() * log_p).sum(dim=1).mean()


def sigmoid_ramp(step: int, start: int, length: int) -> float:
    """0 before ``start``, ``exp(-5 (1 - t)^2)`` over ``length`` steps, then 1 (Laine & Aila)."""
    if step < start:
        return 0.0
    if length <= 0:
        return 1.0
    t = min(1.0, (step - start) / length)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def split_parts(logits: list[Tensor], sizes: list[int]) -> list[list[Tensor]]:
    """Per-level logits of one concatenated batch, cut back into its parts."""
    per_level = [z.split(sizes) for z in logits]
    return [[chunks[i] for chunks in per_level] for i in range(len(sizes))]
