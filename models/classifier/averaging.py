"""An exponential moving average of a network's weights (Polyak averaging), for evaluation.

Training steps move the live weights; the average follows them and is what the run keeps at the
end of a phase. Float buffers (batch-norm statistics) are averaged the same way, integer ones
copied.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightAverage:
    """EMA of ``model``'s parameters and buffers with a warm-up of the decay.

    The decay at update ``t`` is ``min(decay, (1 + t) / (10 + t))``, so that the average is not
    dominated by the first weights of a short run.

    Args:
        model: the network being trained (its tensors are read in place, not copied each step).
        decay: the EMA decay per update.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        live = model.state_dict()  # detached tensors sharing the parameters' storage
        self.shadow = {k: v.detach().clone() for k, v in live.items()}
        floats = [k for k, v in live.items() if v.is_floating_point()]
        self._live = [live[k] for k in floats]
        self._avg = [self.shadow[k] for k in floats]
        self._others = [(live[k], self.shadow[k]) for k in live if k not in set(floats)]

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the live weights (call after each optimiser step)."""
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._avg, self._live, 1.0 - decay)
        self.updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the average into ``model`` (integer buffers from the live model)."""
        for live, avg in self._others:
            avg.copy_(live)
        model.load_state_dict(self.shadow)
