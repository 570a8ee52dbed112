"""The adversarial half of a step: D's update(s), then G's, on one step's batches.

D sees the real pairs, G's pairs and the unlabelled images in *one* pass (the pairs' scores and
every leaf's score on ``x_u`` come from the same trunk features: one launch sequence instead of
three, which is what small networks on a GPU wait on), then G is pushed through the updated D.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from models.gan.conditional import ProjectionDiscriminator
from models.triple import losses


def discriminator_round(
    d: ProjectionDiscriminator,
    opt_d: torch.optim.Optimizer,
    pair: losses.PairLoss,
    real: tuple[Tensor, Tensor, Tensor],
    gen: tuple[Tensor, Tensor],
    x_u: Tensor,
    p_c: Tensor,
    alpha: float,
    steps: int = 1,
    autocast: Callable[[], Any] = lambda: torch.autocast("cpu", enabled=False),
) -> tuple[Tensor, dict[str, Tensor]]:
    """``steps`` updates of D; D's scores of every leaf on ``x_u`` (detached) and its terms.

    Args:
        d: the projection discriminator.
        opt_d: its optimiser.
        pair: the GAN loss.
        real: ``(images, leaves, weights)`` D should call real (a weight 0 leaves a pair out).
        gen: ``(G's images, their leaves)``; the images are detached here.
        x_u: unlabelled images, scored with every leaf (C's pairs).
        p_c: ``[B_u, n_leaves]`` C's leaf distribution on ``x_u``.
        alpha: weight of C's pairs (G's: ``1 - alpha``).
        steps: D updates on these batches.
        autocast: the precision context of the forward passes.
    """
    (x_real, y_real, w_real), (fake, y_g) = real, gen
    n_r, n_g = len(x_real), len(fake)
    leaves = torch.cat([y_real, y_g])
    p_c = p_c.detach()
    s_all_u = torch.zeros(0)
    terms: dict[str, Tensor] = {}
    for _ in range(steps):
        with autocast():
            h, phi = d.phi(torch.cat([x_real, fake.detach(), x_u]))
            psi = d.psi(h).flatten().float()
            table = d.embedding.all_leaves().float()
        phi = phi.float()
        s_pairs = psi[: n_r + n_g] + (table[leaves] * phi[: n_r + n_g]).sum(dim=1)
        s_all_u = psi[n_r + n_g :, None] + phi[n_r + n_g :] @ table.t()
        loss, terms = losses.discriminator_loss(
            pair, s_pairs[:n_r], s_pairs[n_r:], s_all_u, p_c, alpha, w_real
        )
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
    return s_all_u.detach(), {k: v.detach() for k, v in terms.items()}


def generator_round(
    d: ProjectionDiscriminator,
    opt_g: torch.optim.Optimizer,
    pair: losses.PairLoss,
    fake: Tensor,
    y_g: Tensor,
    autocast: Callable[[], Any] = lambda: torch.autocast("cpu", enabled=False),
    guide: Callable[[Tensor], Tensor] | None = None,
    guide_weight: float = 0.0,
) -> dict[str, Tensor]:
    """One update of G: its pairs should be called real by D (D's weights get no gradient).

    ``guide`` (with ``guide_weight > 0``) adds a second wish: ``guide(fake)``, a loss of G's
    images under a frozen judge (the game passes the EMA teacher's cross-entropy towards
    ``y_g``), so G draws what C calls ``y`` as well as what D calls real.
    """
    d.requires_grad_(False)
    try:
        with autocast():
            scores = d(fake, y_g).float()
        adversarial = pair.gen(scores).mean()
        loss, terms = adversarial, {"g_loss": adversarial.detach()}
        if guide is not None and guide_weight > 0:
            guided = guide(fake)
            loss = loss + guide_weight * guided
            terms["g_guide"] = guided.detach()
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
    finally:
        d.requires_grad_(True)
    return terms
