"""The three players and what each optimises with: C (and its EMA teacher), G, D.

C is the project's :class:`~models.classifier.HierarchicalClassifier` (one head per tree level,
merged leaf probabilities) on a trunk without spectral norm; its teacher is an exponential moving
average of its weights (parameters and batch-norm statistics), used for the mean-teacher term,
for labelling D's extra real pairs, and as the classifier the game hands over. G and D are the
tree-conditioned networks of :mod:`models.gan.conditional`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.classifier.config import ClassifierConfig
from models.classifier.network import HierarchicalClassifier
from models.gan.conditional import (
    ConditionalGenerator,
    ProjectionDiscriminator,
    build_conditional_gan,
)
from models.gan.config import GanTrainConfig
from models.gan.networks import GanArchitecture
from models.gan.triple_config import TripleConfig
from models.tree.hierarchy import Hierarchy


@dataclass
class Players:
    """The networks of one game and their optimisers (G and D are None when not generative)."""

    classifier: HierarchicalClassifier
    teacher: HierarchicalClassifier
    opt_c: torch.optim.Optimizer
    generator: ConditionalGenerator | None = None
    discriminator: ProjectionDiscriminator | None = None
    opt_g: torch.optim.Optimizer | None = None
    opt_d: torch.optim.Optimizer | None = None

    def modules(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        """Everything with a state dict, by checkpoint key."""
        named: dict[str, Any] = {
            "classifier": self.classifier,
            "teacher": self.teacher,
            "opt_c": self.opt_c,
            "generator": self.generator,
            "discriminator": self.discriminator,
            "opt_g": self.opt_g,
            "opt_d": self.opt_d,
        }
        return {k: v for k, v in named.items() if v is not None}

    def to_channels_last(self) -> None:
        """Every network's weights in channels-last memory format."""
        for net in self.modules().values():
            if isinstance(net, nn.Module):
                net.to(memory_format=torch.channels_last)

    def step_classifier(self, loss: Tensor, lrs: list[float], teacher_decay: float) -> None:
        """One optimiser step of C on ``loss`` at ``lrs`` (per group); the teacher follows."""
        for group, lr in zip(self.opt_c.param_groups, lrs, strict=True):
            group["lr"] = lr
        self.opt_c.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_c.step()
        update_teacher(self.teacher, self.classifier, teacher_decay)

    def state_dict(self) -> dict[str, Any]:
        """State of every network and optimiser."""
        return {k: v.state_dict() for k, v in self.modules().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        for key, module in self.modules().items():
            module.load_state_dict(state[key])


def classifier_architecture(arch: GanArchitecture) -> GanArchitecture:
    """C's trunk: D's shape, without spectral norm (batch norm serves a classifier better)."""
    return arch.model_copy(update={"spectral_norm": False, "num_classes": 0})


def build_players(
    config: GanTrainConfig,
    classifier_config: ClassifierConfig,
    tree: Hierarchy,
    device: torch.device,
    trunk_state: dict[str, Tensor] | None = None,
) -> Players:
    """C (from a GAN discriminator's trunk when given), its teacher, G and D, and optimisers."""
    game = config.triple or TripleConfig()
    fused = (
        device.type == "cuda"
    )  # one kernel per optimiser step: these small nets are launch-bound
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        classifier = HierarchicalClassifier(
            classifier_architecture(config.architecture), tree.level_sizes, classifier_config
        )
    if trunk_state is not None:
        classifier.load_trunk(trunk_state)
    classifier.to(device)
    trunk = classifier.trunk_parameters()
    trunk_ids = {id(p) for p in trunk}
    lr = classifier_config.lr
    opt_c = torch.optim.AdamW(
        [
            {"params": trunk, "lr": lr * classifier_config.trunk_lr_scale},
            {"params": [p for p in classifier.parameters() if id(p) not in trunk_ids], "lr": lr},
        ],
        weight_decay=classifier_config.weight_decay,
        fused=fused,
    )
    teacher = copy.deepcopy(classifier).eval()
    teacher.requires_grad_(False)
    players = Players(classifier, teacher, opt_c)
    if game.generative:
        g, d = build_conditional_gan(
            config.architecture,
            tree,
            game.embed_dim,
            game.embedding == "hierarchical",
            config.seed,
            game.g_embed_input,
        )
        players.generator, players.discriminator = g.to(device), d.to(device)
        players.opt_g = torch.optim.Adam(g.parameters(), config.lr_g, config.betas, fused=fused)
        players.opt_d = torch.optim.Adam(d.parameters(), config.lr_d, config.betas, fused=fused)
    return players


@torch.no_grad()
def update_teacher(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """``teacher <- decay * teacher + (1 - decay) * student`` (parameters and float buffers)."""
    t_params = list(teacher.parameters())
    torch._foreach_lerp_(t_params, list(student.parameters()), 1.0 - decay)
    for t_buf, s_buf in zip(teacher.buffers(), student.buffers(), strict=True):
        if t_buf.dtype.is_floating_point:
            t_buf.lerp_(s_buf, 1.0 - decay)
        else:
            t_buf.copy_(s_buf)


@contextmanager
def batch_stats_frozen(model: nn.Module) -> Iterator[None]:
    """Train-mode forward passes that leave the batch-norm running statistics untouched.

    C sees G's samples for R_P; their statistics must not leak into the statistics C (and its
    teacher) will classify real images with.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum


def game_run_key(
    config: GanTrainConfig,
    classifier_config: ClassifierConfig,
    labelled: np.ndarray,
    data_hash: str,
    trunk_state: dict[str, Tensor] | None,
) -> str:
    """A game's identity: config, C's config, labelled subset, starting trunk, data."""
    speed = {"device", "num_threads", "channels_last"}
    blob = json.dumps(
        {
            "gan": config.run_key(data_hash),
            "classifier": classifier_config.model_dump(exclude=speed),
            "labelled": hashlib.sha256(np.ascontiguousarray(labelled).tobytes()).hexdigest(),
            "trunk": _state_digest(trunk_state),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _state_digest(state: dict[str, Tensor] | None) -> str:
    """A short digest of a state dict's tensors (the starting trunk is part of a run's identity)."""
    if state is None:
        return ""
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class GameResult:
    """What a finished (or deadline-stopped) game returns."""

    players: Players
    steps: int
    resumed_from: int
    seconds: float
    labelled_indices: np.ndarray
    truncated: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
