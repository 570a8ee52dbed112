"""The hierarchical classifier: the GAN discriminator's trunk, a shared neck, one head per level.

Training minimises the weighted sum over levels of the *conditional* cross-entropy
``-log P(node_l | node_{l-1})`` (:mod:`models.merge`), so that the product along a path is the
leaf probability the model is judged on. The from-scratch baseline is the same code with a
randomly initialised trunk.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from models.attacks import AdversarialTrainingConfig
from models.data import stratified_fraction
from models.device import configure_threads, enable_fast_math, resolve_device
from models.gan import Discriminator, GanArchitecture
from models.gan_training import map_image_batches, to_model_range
from models.hierarchy import Hierarchy
from models.merge import TreeTensors, conditional_log_probs, decode_global, leaf_log_probs

logger = logging.getLogger(__name__)


class ClassifierConfig(BaseModel):
    """How the hierarchical classifier is built and trained (``classifier:`` in the YAML)."""

    model_config = ConfigDict(extra="forbid")

    init: Literal["gan", "scratch"] = Field("gan", description="trunk from the GAN's D or random")
    feature_pool: int = Field(4, ge=1, le=7, description="trunk blocks pooled to this size")
    hidden: int = Field(256, ge=8, description="width of the shared neck")
    dropout: float = Field(0.3, ge=0, lt=1)
    level_weights: list[float] | None = Field(None, description="loss weight per level; default 1")
    label_fraction: float = Field(1.0, gt=0, le=1, description="share of train labels used")
    epochs: int = Field(15, ge=1)
    min_steps: int = Field(
        0, ge=0, description="train at least this many steps (small label fractions: same budget)"
    )
    freeze_epochs: int = Field(1, ge=0, description="epochs with the trunk frozen, heads only")
    batch_size: int = Field(128, ge=2)
    lr: float = Field(2e-3, gt=0)
    trunk_lr_scale: float = Field(0.5, gt=0, description="trunk learning rate = lr * this")
    weight_decay: float = Field(5e-4, ge=0)
    augment: bool = Field(True, description="random +-2 px shifts and horizontal flips")
    hflip: bool = True
    seed: int = 0
    device: str = "auto"
    channels_last: bool = True
    num_threads: int | None = None
    adversarial: AdversarialTrainingConfig | None = Field(
        None, description="PGD adversarial fine-tuning epochs after the clean ones; off if None"
    )


class HierarchicalClassifier(nn.Module):
    """``image -> [logits of level 0, ..., logits of the leaf level]``."""

    def __init__(
        self, arch: GanArchitecture, level_sizes: tuple[int, ...], config: ClassifierConfig
    ) -> None:
        super().__init__()
        arch = arch.model_copy(update={"num_classes": 0, "feature_pool": config.feature_pool})
        self.arch = arch
        self.level_sizes = tuple(level_sizes)
        self.backbone = Discriminator(arch)
        self.backbone.head = nn.Identity()  # the real/fake head is not part of the classifier
        self.neck = nn.Sequential(
            nn.Linear(self.backbone.feature_dim, config.hidden),
            nn.BatchNorm1d(config.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
        )
        self.heads = nn.ModuleList(nn.Linear(config.hidden, n) for n in level_sizes)

    def load_trunk(self, discriminator_state: dict[str, Tensor]) -> None:
        """Copy the trunk weights of a trained discriminator (its head is dropped)."""
        trunk = {k: v for k, v in discriminator_state.items() if k.startswith("trunk.")}
        missing, unexpected = self.backbone.load_state_dict(trunk, strict=False)
        if unexpected or any(k.startswith("trunk.") for k in missing):
            raise ValueError(f"discriminator weights do not fit the trunk: {missing or unexpected}")

    def trunk_parameters(self) -> list[nn.Parameter]:
        """Parameters of the (GAN-pretrained) trunk."""
        return list(self.backbone.trunk.parameters())

    def forward(self, x: Tensor) -> list[Tensor]:
        """Per-level logits ``[B, n_l]``, top level first."""
        return self.logits_from_features(self.backbone.features(x))

    def logits_from_features(self, features: Tensor) -> list[Tensor]:
        """Per-level logits from the trunk's pooled features ``[B, feature_dim]``.

        With ``backbone.features(x)`` this is ``forward`` in two halves: the drift monitor reads
        the embeddings and the predictions from one pass.
        """
        h = self.neck(features)
        return [head(h) for head in self.heads]


def conditional_nll(
    logits: list[Tensor], level_labels: Tensor, tt: TreeTensors, weights: list[float]
) -> Tensor:
    """Weighted sum over levels of ``-log P(true node | true parent)``, batch-averaged."""
    cond = conditional_log_probs(logits, tt)
    loss = logits[0].new_zeros(())
    for level, (c, w) in enumerate(zip(cond, weights, strict=True)):
        loss = loss + w * -c.gather(1, level_labels[:, level : level + 1]).mean()
    return loss


def augment_batch(x: Tensor, generator: torch.Generator, hflip: bool, max_shift: int = 2) -> Tensor:
    """Random integer shifts (zero-filled at the border, i.e. -1 in model range) and flips."""
    b = x.shape[0]
    pad = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), device=x.device, generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), device=x.device, generator=generator)
    h, w = x.shape[-2:]
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])[:, None, None, :]
    out = pad.gather(2, rows.expand(b, pad.shape[1], h, pad.shape[3]))
    out = out.gather(3, cols.expand(b, pad.shape[1], h, w))
    if hflip:
        flip = torch.rand(b, device=x.device, generator=generator) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out


@dataclass
class FitResult:
    """A trained classifier and its training record."""

    model: HierarchicalClassifier
    history: list[dict[str, float]] = field(default_factory=list)
    labelled_indices: np.ndarray | None = None
    images_per_second: float = 0.0
    seconds: float = 0.0
    adversarial_seconds: float = 0.0


def optimizer_step(
    model: HierarchicalClassifier,
    opt: torch.optim.Optimizer,
    base_lrs: list[float],
    lr_scale: float,
    x: Tensor,
    level_labels: Tensor,
    tt: TreeTensors,
    weights: list[float],
) -> float:
    """One step on the conditional NLL with every group's rate at ``base * lr_scale``; the loss."""
    for group, lr in zip(opt.param_groups, base_lrs, strict=True):
        group["lr"] = lr * lr_scale
    loss = conditional_nll(model(x), level_labels, tt, weights)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


@torch.no_grad()
def predict_logits(
    model: HierarchicalClassifier, images: np.ndarray, batch_size: int = 1024
) -> list[Tensor]:
    """Per-level logits for ``[N, H, W, C]`` uint8 images (eval mode), on the model's device."""
    chunks = map_image_batches(model, lambda x: [z.float() for z in model(x)], images, batch_size)
    return [torch.cat([c[lv] for c in chunks]) for lv in range(len(model.level_sizes))]


def fit_classifier(
    config: ClassifierConfig,
    arch: GanArchitecture,
    tree: Hierarchy,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    discriminator_state: dict[str, Tensor] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Train the hierarchical classifier.

    Args:
        config: training settings; ``init="gan"`` needs ``discriminator_state``.
        arch: the GAN architecture the trunk shares.
        tree: the label tree.
        train_images: ``[N, H, W, C]`` uint8.
        train_labels: ``[N]`` leaf labels; only a stratified ``label_fraction`` of them is used.
        val_images: optional, for a per-epoch validation accuracy.
        val_labels: their leaf labels.
        discriminator_state: the GAN discriminator's weights.
        on_epoch: called with ``(epoch, metrics)`` after each epoch.

    Returns:
        The model (eval mode) and its history.
    """
    device = resolve_device(config.device)
    if device.type == "cpu":
        configure_threads(config.num_threads)
    enable_fast_math(device)
    torch.manual_seed(config.seed)
    model = HierarchicalClassifier(arch, tree.level_sizes, config)
    if config.init == "gan":
        if discriminator_state is None:
            raise ValueError("init='gan' needs the GAN discriminator's weights")
        model.load_trunk(discriminator_state)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    tt = TreeTensors(tree, device)
    weights = config.level_weights or [1.0] * tree.depth
    if len(weights) != tree.depth:
        raise ValueError(
            f"level_weights has {len(weights)} entries for a tree of depth {tree.depth}"
        )

    idx = stratified_fraction(train_labels, config.label_fraction, config.seed)
    x_all = torch.from_numpy(np.ascontiguousarray(train_images[idx])).permute(0, 3, 1, 2).to(device)
    y_all = torch.from_numpy(tree.all_level_labels(train_labels[idx])).to(device)
    n = len(idx)
    batch = min(config.batch_size, n)
    steps_per_epoch = max(1, n // batch)
    epochs = max(config.epochs, math.ceil(config.min_steps / steps_per_epoch))
    total_steps = epochs * steps_per_epoch
    trunk_ids = {id(p) for p in model.trunk_parameters()}
    other = [p for p in model.parameters() if id(p) not in trunk_ids]
    opt = torch.optim.AdamW(
        [
            {"params": model.trunk_parameters(), "lr": config.lr * config.trunk_lr_scale},
            {"params": other, "lr": config.lr},
        ],
        weight_decay=config.weight_decay,
    )
    base_lrs = [g["lr"] for g in opt.param_groups]
    gen = torch.Generator(device=device).manual_seed(config.seed)
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    step = 0
    freeze_epochs = min(config.freeze_epochs, epochs - 1) if config.init == "gan" else 0
    for epoch in range(epochs):
        frozen = epoch < freeze_epochs
        for p in model.trunk_parameters():
            p.requires_grad_(not frozen)
        model.train()
        if frozen:
            model.backbone.eval()  # keep the GAN's batch-norm statistics while the trunk is frozen
        perm = torch.randperm(n, device=device, generator=gen)
        loss_sum = 0.0
        for b in range(steps_per_epoch):
            sel = perm[b * batch : (b + 1) * batch]
            x = to_model_range(x_all[sel])
            if config.augment:
                x = augment_batch(x, gen, config.hflip)
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            # cosine schedule over the whole run
            scale = 0.5 * (1 + math.cos(math.pi * step / total_steps))
            loss_sum += optimizer_step(model, opt, base_lrs, scale, x, y_all[sel], tt, weights)
            step += 1
        metrics = {
            "epoch": float(epoch + 1),
            "train_loss": loss_sum / steps_per_epoch,
            "frozen": float(frozen),
        }
        if val_images is not None and val_labels is not None:
            metrics["val_fine_accuracy"] = fine_accuracy(model, tt, val_images, val_labels)
        history.append(metrics)
        logger.info("classifier epoch %d/%d: %s", epoch + 1, epochs, metrics)
        if on_epoch is not None:
            on_epoch(epoch + 1, metrics)
    seconds = time.perf_counter() - started
    adversarial_seconds = 0.0
    if config.adversarial is not None:
        # imported here because models.adversarial builds on this module
        from models.adversarial import adversarial_finetune

        started = time.perf_counter()
        history += adversarial_finetune(
            model,
            opt,
            base_lrs,
            config,
            tt,
            x_all,
            y_all,
            weights,
            gen,
            first_epoch=epochs,
            validate=None
            if val_images is None or val_labels is None
            else lambda: {"val_fine_accuracy": fine_accuracy(model, tt, val_images, val_labels)},
            on_epoch=on_epoch,
        )
        adversarial_seconds = time.perf_counter() - started
    model.eval()
    return FitResult(
        model=model,
        history=history,
        labelled_indices=idx,
        images_per_second=step * batch / max(seconds, 1e-9),
        seconds=seconds + adversarial_seconds,
        adversarial_seconds=adversarial_seconds,
    )


def fine_accuracy(
    model: HierarchicalClassifier, tt: TreeTensors, images: np.ndarray, labels: np.ndarray
) -> float:
    """Leaf accuracy of the merged (uncalibrated) prediction, global decoding."""
    logits = predict_logits(model, images)
    pred = decode_global(leaf_log_probs(conditional_log_probs(logits, tt), tt)).cpu().numpy()
    return float((pred == labels).mean())
