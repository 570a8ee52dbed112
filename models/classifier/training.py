"""Training the hierarchical classifier: one loop, phases of epochs, and batch perturbations.

The loss is the weighted sum over levels of the *conditional* cross-entropy
``-log P(node_l | node_{l-1})`` (:mod:`models.tree.merge`), so that the product along a path is
the leaf probability the model is judged on.

A run is a sequence of :class:`Phase` s, each with its own learning-rate cycle (optional linear
warm-up, then cosine), its own chain of :class:`Perturbation` s applied to every batch, and its
loss (:mod:`.losses`): the clean phase (frozen trunk first, then everything; random shifts,
flips and erasing), and, when configured, adversarial epochs (Madry PGD as a perturbation after
the same augmentation, or TRADES as a loss). With ``ema_decay`` an average of the weights
(:mod:`.averaging`) is what each phase leaves behind. A new way of changing batches (a
generator's samples, say) is one more perturbation, a new objective one more loss: not a second
loop.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from models.attacks.adversarial_training import PGDPerturbation
from models.classifier.augment import RandomErasing, ShiftFlip
from models.classifier.averaging import WeightAverage
from models.classifier.config import ClassifierConfig
from models.classifier.losses import BatchLoss, HierarchicalNLL, TradesLoss
from models.classifier.network import HierarchicalClassifier, fine_accuracy
from models.classifier.phase import Perturbation, Phase
from models.data.dataset import stratified_fraction
from models.data.streaming import StreamedImages
from models.gan.networks import GanArchitecture
from models.runtime import distributed
from models.runtime.device import prepare_device, resolve_bf16
from models.runtime.tensors import to_model_range
from models.tree.hierarchy import Hierarchy
from models.tree.merge import TreeTensors

logger = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, float]], None]
Validation = Callable[[HierarchicalClassifier], dict[str, float]]


@dataclass
class FitResult:
    """A trained classifier and its training record."""

    model: HierarchicalClassifier
    history: list[dict[str, float]] = field(default_factory=list)
    labelled_indices: np.ndarray | None = None
    images_per_second: float = 0.0
    seconds: float = 0.0
    adversarial_seconds: float = 0.0


class ClassifierTrainer:
    """Runs :class:`Phase` s over one labelled training set, with one optimiser throughout.

    Args:
        model: the network, on its device.
        config: batch size, learning rates, weight decay, seed, memory format, level weights,
            augmentation, label smoothing, weight averaging.
        tree: the label tree.
        images: uint8 ``[N, H, W, C]`` training images (only these are used), or a stream of
            them (its ``label_fraction`` share of each class is used).
        labels: ``[N]`` their leaf labels (None with a stream).
        validate: extra per-epoch metrics of a network (e.g. validation accuracy), or None.
    """

    def __init__(
        self,
        model: HierarchicalClassifier,
        config: ClassifierConfig,
        tree: Hierarchy,
        images: np.ndarray | StreamedImages,
        labels: np.ndarray | None,
        validate: Validation | None = None,
    ) -> None:
        device = next(model.parameters()).device
        self.model, self.config, self.validate = model, config, validate
        self.dist = distributed.current()  # under torchrun: this rank's slice of every batch
        distributed.convert_batchnorm(model)
        self.tt = TreeTensors(tree, device)
        self.weights = config.level_weights or [1.0] * tree.depth
        if len(self.weights) != tree.depth:
            raise ValueError(
                f"level_weights has {len(self.weights)} entries for a tree of depth {tree.depth}"
            )
        self.loss = HierarchicalNLL(self.tt, self.weights, config.label_smoothing)
        self.stream = images if isinstance(images, StreamedImages) else None
        if self.stream is not None:
            n = self.stream.start(
                self.dist.local_batch(config.batch_size), config.seed, self.dist,
                config.label_fraction,
            )  # fmt: skip
            self.y_tree = torch.from_numpy(tree.leaf_paths).to(device)
        else:
            # [N, H, W, C] uint8 -> [N, C, H, W] uint8 on the device, once
            self.x_all = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
            self.x_all = self.x_all.to(device)
            self.y_all = torch.from_numpy(tree.all_level_labels(labels)).to(device)
            n = len(images)
        self.num_labelled = n
        self.batch = min(config.batch_size, n)
        self.steps_per_epoch = max(1, n // self.batch)
        trunk = model.trunk_parameters()
        trunk_ids = {id(p) for p in trunk}
        self.opt = torch.optim.AdamW(
            [
                {"params": trunk, "lr": config.lr * config.trunk_lr_scale},
                {
                    "params": [p for p in model.parameters() if id(p) not in trunk_ids],
                    "lr": config.lr,
                },
            ],
            weight_decay=config.weight_decay,
            # one pass over each parameter instead of foreach's several: with the default
            # neck (2.4M weights) the update was ~10 % of a CPU step (torch profiler)
            fused=True,
        )
        self.base_lrs = [g["lr"] for g in self.opt.param_groups]
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        self.epochs_done = 0
        self.average: WeightAverage | None = None
        self.bf16 = resolve_bf16(config.bf16, device)
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def augmentation(self) -> list[Perturbation]:
        """The configured augmentation (shifts and flips, then random erasing), or nothing."""
        if not self.config.augment:
            return []
        out: list[Perturbation] = [
            ShiftFlip(self.generator, self.config.hflip, self.config.max_shift)
        ]
        if self.config.random_erasing > 0:
            out.append(RandomErasing(self.generator, self.config.random_erasing))
        return out

    def attack(self) -> tuple[list[Perturbation], BatchLoss | None]:
        """What ``config.adversarial`` adds to a phase: a PGD perturbation, or TRADES' loss."""
        adv = self.config.adversarial
        if adv is None:
            raise ValueError("an adversarial phase needs ClassifierConfig.adversarial")
        if adv.method == "trades":
            seed, channels_last = self.config.seed, self.config.channels_last
            return [], TradesLoss(self.loss, adv, seed, channels_last)
        pgd = PGDPerturbation(
            self.model,
            self.tt,
            adv,
            (self.model.arch.channels, self.model.arch.image_size, self.model.arch.image_size),
            self.batch,
            self.config.seed,
            self.config.channels_last,
        )
        return [pgd], None

    def pgd_phase(self) -> Phase:
        """Adversarial epochs as configured (``config.adversarial``), after augmentation."""
        adv = self.config.adversarial
        perturbations, loss = self.attack()
        return Phase(
            "adversarial",
            adv.epochs if adv is not None else 0,
            lr_scale=adv.lr_scale if adv is not None else 1.0,
            perturbations=[*self.augmentation(), *perturbations],
            loss=loss,
            tags={"adversarial": 1.0},
        )

    def run(self, phase: Phase, on_epoch: EpochCallback | None = None) -> list[dict[str, float]]:
        """Train through ``phase``; one metrics dict per epoch.

        With ``config.ema_decay`` the phase starts a fresh weight average, validates it each
        epoch, and leaves it in the model at the end.
        """
        total_steps = phase.epochs * self.steps_per_epoch
        decay = self.config.ema_decay
        self.average = WeightAverage(self.model, decay) if decay is not None else None
        evaluated = copy.deepcopy(self.model) if self.average is not None else self.model
        history = []
        for epoch in range(phase.epochs):
            frozen = epoch < phase.frozen_epochs
            self._freeze_trunk(frozen)
            batches = self._epoch_batches()
            loss_sum = 0.0
            for b in range(self.steps_per_epoch):
                step = epoch * self.steps_per_epoch + b
                scale = phase.lr_factor(step, total_steps, self.steps_per_epoch)
                loss_sum += self._step(*batches(b), phase, step, scale)
            self.epochs_done += 1
            metrics = {
                "epoch": float(self.epochs_done),
                "train_loss": self.dist.mean({"l": loss_sum / self.steps_per_epoch})["l"],
                "frozen": float(frozen),
                **phase.tags,
            }
            if not self.dist.is_main:  # rank 0 alone validates and logs
                continue
            if self.validate is not None:
                if self.average is not None:
                    self.average.copy_to(evaluated)
                # under the training passes' autocast: the default model's val pass (6,000
                # images, mirror TTA, 2 Zen 4 cores) 3.9 -> 1.7 s an epoch, a minute of make
                # train's 30 epochs; its accuracy moved by 0.0002 (one model, both ways)
                with self.autocast:
                    metrics.update(self.validate(evaluated))
            history.append(metrics)
            logger.info(
                "classifier %s epoch %d/%d: %s", phase.name, epoch + 1, phase.epochs, metrics
            )
            if on_epoch is not None:
                on_epoch(self.epochs_done, metrics)
        if self.average is not None:
            self.average.copy_to(self.model)
        self.model.eval()
        return history

    def _epoch_batches(self) -> Callable[[int], tuple[Tensor, Tensor]]:
        """Batch ``b`` of a new epoch: this rank's share of a global, seeded permutation."""
        if self.stream is not None:
            step0 = self.epochs_done * self.steps_per_epoch

            def streamed(b: int) -> tuple[Tensor, Tensor]:
                x, leaf = self.stream.next_batch(self.x_device, step0 + b)  # type: ignore[union-attr]
                return x, self.y_tree[leaf]

            return streamed
        perm = torch.randperm(len(self.x_all), device=self.x_all.device, generator=self.generator)

        def in_memory(b: int) -> tuple[Tensor, Tensor]:
            sel = self.dist.shard(perm[b * self.batch : (b + 1) * self.batch])
            return self.x_all[sel], self.y_all[sel]

        return in_memory

    @property
    def x_device(self) -> torch.device:
        """Where the batches go."""
        return next(self.model.parameters()).device

    def _freeze_trunk(self, frozen: bool) -> None:
        for p in self.model.trunk_parameters():
            p.requires_grad_(not frozen)
        self.model.train()
        if frozen:
            self.model.backbone.eval()  # keep the GAN's batch-norm statistics while frozen
        # DDP registers the parameters that need gradients when it wraps: wrap again on a change
        if getattr(self, "_wrapped_frozen", None) != frozen:
            self.forward_model, self._wrapped_frozen = self.dist.wrap(self.model), frozen

    def _step(self, x_u8: Tensor, y: Tensor, phase: Phase, step: int, lr_scale: float) -> float:
        """Perturb one batch, then one optimiser step on the phase's loss; the loss."""
        x = to_model_range(x_u8)
        for perturb in phase.perturbations:
            x, y = perturb(x, y, step)
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for group, lr in zip(self.opt.param_groups, self.base_lrs, strict=True):
            group["lr"] = lr * lr_scale
        with self.autocast:  # under torchrun the DDP wrapper, which syncs the gradients
            loss = (phase.loss or self.loss)(self.forward_model, x, y, step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.average is not None:
            self.average.update()
        return float(loss.detach())


def fit_classifier(
    config: ClassifierConfig,
    arch: GanArchitecture,
    tree: Hierarchy,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    discriminator_state: dict[str, Tensor] | None = None,
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """Train the hierarchical classifier: the clean phase, then PGD epochs if configured.

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
    device = prepare_device(config.device, config.num_threads)
    torch.manual_seed(config.seed)
    model = HierarchicalClassifier(arch, tree.level_sizes, config)
    if config.init == "gan":
        if discriminator_state is None:
            raise ValueError("init='gan' needs the GAN discriminator's weights")
        model.load_trunk(discriminator_state)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    trainer, idx = _labelled_trainer(
        model, config, tree, train_images, train_labels, val_images, val_labels
    )
    epochs = max(config.epochs, math.ceil(config.min_steps / trainer.steps_per_epoch))
    frozen = min(config.freeze_epochs, epochs - 1) if config.init == "gan" else 0
    adv = config.adversarial
    perturbations, loss = trainer.attack() if adv is not None and adv.from_start else ([], None)
    main = Phase(
        "adversarial" if perturbations or loss else "clean",
        epochs,
        frozen_epochs=frozen,
        perturbations=[*trainer.augmentation(), *perturbations],
        loss=loss,
        warmup_epochs=config.warmup_epochs,
        tags={"adversarial": 1.0} if perturbations or loss else {},
    )
    started_all = started = time.perf_counter()
    history = trainer.run(main, on_epoch)
    seconds = time.perf_counter() - started
    adversarial_seconds = seconds if main.name == "adversarial" else 0.0
    if adv is not None and adv.epochs > 0:
        started = time.perf_counter()
        history += trainer.run(trainer.pgd_phase(), on_epoch)
        adversarial_seconds += time.perf_counter() - started
    return FitResult(
        model=model,
        history=history,
        labelled_indices=idx,
        images_per_second=epochs * trainer.steps_per_epoch * trainer.batch / max(seconds, 1e-9),
        seconds=time.perf_counter() - started_all,
        adversarial_seconds=adversarial_seconds,
    )


def finetune_adversarially(
    model: HierarchicalClassifier,
    config: ClassifierConfig,
    tree: Hierarchy,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[list[dict[str, float]], float]:
    """Adversarially fine-tune an already trained classifier (e.g. a saved default model).

    The same epochs :func:`fit_classifier` appends when ``config.adversarial`` is set, started
    from ``model``'s weights with a fresh AdamW (the clean run's optimiser state is not saved).

    Returns:
        The per-epoch history and the seconds it took.
    """
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    trainer, _ = _labelled_trainer(model, config, tree, *train, *(val or (None, None)))
    history = trainer.run(trainer.pgd_phase())
    return history, time.perf_counter() - started


def _labelled_trainer(
    model: HierarchicalClassifier,
    config: ClassifierConfig,
    tree: Hierarchy,
    images: np.ndarray | StreamedImages,
    labels: np.ndarray | None,
    val_images: np.ndarray | None,
    val_labels: np.ndarray | None,
) -> tuple[ClassifierTrainer, np.ndarray]:
    """A trainer on the stratified ``label_fraction`` of the labels, and the indices it uses."""
    tt = TreeTensors(tree, next(model.parameters()).device)

    def validate(network: HierarchicalClassifier) -> dict[str, float]:
        return {"val_fine_accuracy": fine_accuracy(network, tt, val_images, val_labels)}

    has_val = val_images is not None and val_labels is not None
    if isinstance(images, StreamedImages):  # the stream keeps the labelled share itself
        trainer = ClassifierTrainer(
            model, config, tree, images, None, validate if has_val else None
        )
        return trainer, np.arange(trainer.num_labelled)
    idx = stratified_fraction(labels, config.label_fraction, config.seed)
    trainer = ClassifierTrainer(
        model, config, tree, images[idx], labels[idx], validate if has_val else None
    )
    return trainer, idx
