"""TRADES' inner maximisation (Zhang et al. 2019) on the merged hierarchical model, in torch.

TRADES attacks the *prediction*, not the label: the adversarial image maximises
``KL(P(leaf | x) || P(leaf | x_adv))`` over the L-inf ball, starting 0.001-Gaussian-close to
``x``. ART's attacks maximise a loss against labels, so this small PGD loop is written here
(the authors' ``trades.py``, on the merged leaf distribution). The same loop ascends the label's
loss for Madry PGD when ``backend: torch`` (:func:`pgd_adversarial_examples`): ART's PGD pays a
numpy round trip and its own bookkeeping every step, ~5x the step time of this loop on a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.attacks.config import AdversarialTrainingConfig
from models.tree.merge import TreeTensors, merged_log_probs


def leaf_kl(clean_logits: list[Tensor], adv_logits: list[Tensor], tt: TreeTensors) -> Tensor:
    """Batch-mean ``KL(P(leaf | clean) || P(leaf | adv))`` of the merged distributions."""
    clean = merged_log_probs(clean_logits, tt)
    adv = merged_log_probs(adv_logits, tt)
    return F.kl_div(adv, clean, reduction="batchmean", log_target=True)


def kl_adversarial_examples(
    model: nn.Module,
    tt: TreeTensors,
    x: Tensor,
    config: AdversarialTrainingConfig,
    generator: torch.Generator,
    channels_last: bool = False,
) -> Tensor:
    """TRADES' adversarial batch for ``x`` in model range [-1, 1] (``eps`` on [0, 1] pixels).

    The model runs in eval mode with no parameter gradients while attacking; its mode and flags
    are restored. Returns a detached batch in [-1, 1].
    """
    with frozen_eval(model):
        x = x.detach()
        with torch.no_grad():
            clean = merged_log_probs(model(layout(x, channels_last)), tt)
        noise = torch.randn(x.shape, device=x.device, generator=generator)
        start = (x + 0.002 * noise).clamp(-1.0, 1.0)

        def kl(x_adv: Tensor) -> Tensor:
            adv = merged_log_probs(model(layout(x_adv, channels_last)), tt)
            return F.kl_div(adv, clean, reduction="sum", log_target=True)

        return sign_ascent(kl, x, start, config)


def pgd_adversarial_examples(
    model: nn.Module,
    tt: TreeTensors,
    x: Tensor,
    leaves: Tensor,
    config: AdversarialTrainingConfig,
    generator: torch.Generator,
    channels_last: bool = False,
) -> Tensor:
    """Madry PGD's batch for ``x`` in [-1, 1]: ascend the merged leaf NLL of ``leaves``.

    The same loop as TRADES' with the label's loss, from a uniform start in the ball when
    ``config.random_init``; the in-process counterpart of ART's PGD (``backend: torch``).
    """
    with frozen_eval(model):
        x = x.detach()
        start = x
        if config.random_init:
            noise = torch.rand(x.shape, device=x.device, generator=generator) * 2.0 - 1.0
            start = (x + 2.0 * config.eps * noise).clamp(-1.0, 1.0)

        def nll(x_adv: Tensor) -> Tensor:
            log_p = merged_log_probs(model(layout(x_adv, channels_last)), tt)
            return F.nll_loss(log_p, leaves, reduction="sum")

        return sign_ascent(nll, x, start, config)


def sign_ascent(
    objective: Callable[[Tensor], Tensor],
    x: Tensor,
    start: Tensor,
    config: AdversarialTrainingConfig,
) -> Tensor:
    """``config.steps`` signed-gradient steps up ``objective`` from ``start``, kept in the ball.

    Model range [-1, 1] is twice the pixels' [0, 1], so radius and step are doubled.
    """
    eps, step = 2.0 * config.eps, 2.0 * config.eps * config.step_ratio
    x_adv = start.detach()
    for _ in range(config.steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(objective(x_adv), x_adv)
        x_adv = x_adv.detach() + step * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(-1.0, 1.0)
    return x_adv.detach()


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[None]:
    """The model in eval mode with no parameter gradients inside; mode and flags restored."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def layout(x: Tensor, channels_last: bool) -> Tensor:
    """``x`` in the model's memory format."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
