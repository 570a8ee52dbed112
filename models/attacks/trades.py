"""TRADES' inner maximisation (Zhang et al. 2019) on the merged hierarchical model, in torch.

TRADES attacks the *prediction*, not the label: the adversarial image maximises
``KL(P(leaf | x) || P(leaf | x_adv))`` over the L-inf ball, starting 0.001-Gaussian-close to
``x``. ART's attacks maximise a loss against labels, so this small PGD loop is written here
(the authors' ``trades.py``, on the merged leaf distribution); Madry PGD keeps using ART
(:mod:`.adversarial_training`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.attacks.adversarial_training import AdversarialTrainingConfig
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
    eps, step = 2.0 * config.eps, 2.0 * config.eps * config.step_ratio  # model range is 2x wide
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        x = x.detach()
        with torch.no_grad():
            clean = merged_log_probs(model(_layout(x, channels_last)), tt)
        noise = torch.randn(x.shape, device=x.device, generator=generator)
        x_adv = (x + 0.002 * noise).clamp(-1.0, 1.0)
        for _ in range(config.steps):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                adv = merged_log_probs(model(_layout(x_adv, channels_last)), tt)
                kl = F.kl_div(adv, clean, reduction="sum", log_target=True)
                (grad,) = torch.autograd.grad(kl, x_adv)
            x_adv = x_adv.detach() + step * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(-1.0, 1.0)
        return x_adv.detach()
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def _layout(x: Tensor, channels_last: bool) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
