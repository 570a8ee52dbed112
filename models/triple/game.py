"""The Triple-GAN game over the label tree: one loop, resumable, torch only.

Each step (C's optimiser step; D and G step with it once the game is on):

1. batches: labelled ``(x_l, y_l)``, unlabelled ``x_u`` (two augmentations: the student's and the
   teacher's), teacher-labelled ``x_p`` for D's real side, and G's ``(G(z, y_g), y_g)``;
2. D: labelled and teacher-labelled pairs are real; G's pairs and C's pairs (every leaf,
   weighted by C's merged leaf probabilities) are fake, weighted ``1 - alpha`` and ``alpha``;
3. G: wants its pairs called real by the updated D (with ``guide_weight``, ``y`` by C's teacher);
4. C: hierarchical cross-entropy on labels + ``adversarial_weight x alpha x`` its adversarial
   term + ``rp_weight x`` R_P (cross-entropy on G's pairs, after ``rp_start``) +
   ``unlabelled_weight x`` the unlabelled-data term, each ramped in; then the EMA teacher moves.

With ``triple.generative=false`` only C plays (the study's scratch and scratch-ssl arms: the same
loop, optimiser, augmentation and EMA evaluation, no generative model). The uint8 train split
sits on the device; batches are gathered by index from one seeded generator, checkpointed (with
every RNG) beside networks, optimisers and teacher: a killed run resumes bitwise on CPU.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.classifier.augment import augment_batch
from models.classifier.config import ClassifierConfig
from models.classifier.losses import conditional_nll
from models.gan.callbacks import TrainerCallback, write_checkpoint
from models.gan.config import GanTrainConfig
from models.gan.triple_config import TripleConfig
from models.runtime.checkpoint import load_checkpoint, restore_rng_state, rng_state
from models.runtime.device import prepare_device, resolve_bf16
from models.runtime.tensors import to_model_range
from models.tree.hierarchy import Hierarchy
from models.tree.merge import TreeTensors, merged_log_probs
from models.triple import losses, rounds
from models.triple.augment import STRONG_VIEWS
from models.triple.inputs import labelled_subset, level_weights
from models.triple.merge import merge_log_probs
from models.triple.players import GameResult, batch_stats_frozen, build_players, game_run_key

logger = logging.getLogger(__name__)


class TripleGame:
    """Plays the game on uint8 train images held on the device.

    Args:
        config: the GAN section with ``mode: triple`` (``steps``, G/D learning rates, ``seed``,
            devices, checkpoints) and its ``triple`` weights; already fitted to the data.
        classifier_config: C's network and optimiser, ``label_fraction`` and ``seed`` (which
            labelled subset), augmentation and level weights.
        tree: the label tree.
        images: ``[N, H, W, C]`` uint8 train split.
        labels: ``[N]`` its leaf labels; only the labelled subset's are read.
        checkpoint_root: checkpoints go to ``<root>/<run key>``; a re-run resumes from there.
        data_hash: the dataset's content hash (part of the run's identity).
        labelled_indices: an explicit labelled subset instead of the stratified fraction.
        trunk_state: a GAN discriminator's weights to start C's trunk from (None: random).
        callbacks: logging hooks (``on_log``, ``on_checkpoint``).
    """

    def __init__(
        self,
        config: GanTrainConfig,
        classifier_config: ClassifierConfig,
        tree: Hierarchy,
        images: np.ndarray,
        labels: np.ndarray | None,
        checkpoint_root: str | Path,
        data_hash: str = "",
        labelled_indices: np.ndarray | None = None,
        trunk_state: dict[str, Tensor] | None = None,
        callbacks: Sequence[TrainerCallback] = (),
    ) -> None:
        if config.mode != "triple":
            raise ValueError(f"TripleGame needs gan.mode=triple, got {config.mode!r}")
        self.game: TripleConfig = config.triple or TripleConfig()
        self.labelled = labelled_subset(
            tree, labels, classifier_config.label_fraction, classifier_config.seed, labelled_indices
        )
        self.config, self.cconfig, self.tree = config, classifier_config, tree
        self.weights = level_weights(classifier_config.level_weights, tree)
        self.callbacks = list(callbacks)
        self.device = prepare_device(config.device, config.num_threads)
        on_cuda = self.device.type == "cuda"
        self.bf16 = resolve_bf16(config.bf16, self.device)
        self.channels_last = on_cuda if config.channels_last is None else config.channels_last
        self.tt = TreeTensors(tree, self.device)
        # [N, H, W, C] uint8 -> [N, C, H, W] uint8 on the device, once
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        self.images = self.images.contiguous().to(self.device)
        idx = torch.from_numpy(self.labelled).to(self.device)
        self.x_l = self.images[idx]
        self.y_l = torch.from_numpy(labels[self.labelled].astype(np.int64)).to(self.device)
        self.players = build_players(config, classifier_config, tree, self.device, trunk_state)
        if self.channels_last:
            self.players.to_channels_last()
        self.base_lrs = [g["lr"] for g in self.players.opt_c.param_groups]
        self.rng = torch.Generator(device=self.device).manual_seed(config.seed)
        torch.manual_seed(config.seed)  # C's dropout draws from torch's global generator
        self.run_key = game_run_key(
            config, classifier_config, self.labelled, data_hash, trunk_state
        )
        self.run_dir = Path(checkpoint_root) / self.run_key
        self.step = 0

    # ------------------------------------------------------------------ batches
    def _pick(self, n: int, size: int) -> Tensor:
        return torch.randint(n, (size,), device=self.device, generator=self.rng)

    def _view(self, images_u8: Tensor) -> Tensor:
        """Model-range images, augmented as configured (a fresh draw at every call)."""
        x = to_model_range(images_u8)
        if self.cconfig.augment:
            x = augment_batch(x, self.rng, self.cconfig.hflip)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _autocast(self) -> Any:
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _ramp(self, start: int, length: int) -> float:
        return losses.sigmoid_ramp(self.step, start, length)

    def _playing(self) -> bool:
        return self.game.generative and self.step >= self.game.game_start

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, Tensor]:
        """One step of every player; the logged terms."""
        g, pl = self.game, self.players
        li = self._pick(len(self.x_l), min(g.labelled_batch, len(self.x_l)))
        x_l, y_l = self._view(self.x_l[li]), self.y_l[li]
        weak = self._playing() or g.unlabelled in ("mean-teacher", "entropy")
        ui = None
        if g.unlabelled != "none" or self._playing():
            ui = self._pick(len(self.images), g.unlabelled_batch)
        views = {"labelled": x_l}
        if ui is not None and weak:  # C's pairs for D, the mean-teacher and entropy terms
            views["weak"] = self._view(self.images[ui])
        if ui is not None and g.unlabelled == "pseudo-label":
            views["strong"] = self._strong(self.images[ui])
        pl.classifier.train()
        with self._autocast():  # one pass: batch norm sees labelled and unlabelled views together
            logits = [z.float() for z in pl.classifier(torch.cat(list(views.values())))]
        chunks = losses.split_parts(logits, [len(v) for v in views.values()])
        parts = dict(zip(views, chunks, strict=True))
        log_p_u = merged_log_probs(parts["weak"], self.tt) if "weak" in parts else None
        teacher_u, pseudo = self._teacher(ui)
        terms: dict[str, Tensor] = {}
        fake = y_g = s_all_u = None
        if self._playing():
            assert log_p_u is not None
            fake, y_g = self._generate()
            s_all_u = self._adversarial_rounds(
                x_l, y_l, pseudo, views["weak"], log_p_u, fake, y_g, terms
            )
        leaf_paths = self.tt.leaf_paths
        c_terms = {
            "c_labelled": conditional_nll(parts["labelled"], leaf_paths[y_l], self.tt, self.weights)
        }
        c_terms |= self._unlabelled_terms(log_p_u, parts.get("strong", []), teacher_u, s_all_u)
        if fake is not None and y_g is not None and self.game.rp_weight > 0:
            c_terms["c_rp"] = self._rp_term(fake, y_g)
        loss_c = self._classifier_update(c_terms)
        terms |= {k: v.detach() for k, v in c_terms.items()} | {"c_loss": loss_c}
        return terms

    def _strong(self, images_u8: Tensor) -> Tensor:
        view = STRONG_VIEWS[self.game.strong_view]
        x = view(to_model_range(images_u8), self.rng, self.cconfig.hflip)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.no_grad()
    def _teacher(
        self, ui: Tensor | None
    ) -> tuple[Tensor | None, tuple[Tensor, Tensor, Tensor] | None]:
        """The teacher's leaf log-probabilities on its weak view of ``x_u``; D's extra real pairs.

        One pass of the EMA teacher serves both: the target of the unlabelled term and the
        teacher-labelled images (with their labels and confidence mask) for D's real side.
        """
        g = self.game
        wants_u = g.unlabelled in ("mean-teacher", "pseudo-label") and ui is not None
        wants_p = self._playing() and g.pseudo_real_batch > 0 and self.step >= g.pseudo_real_start
        if not (wants_u or wants_p):
            return None, None
        views = [self._view(self.images[ui])] if wants_u else []
        if wants_p:
            views.append(self._view(self.images[self._pick(len(self.images), g.pseudo_real_batch)]))
        with self._autocast():
            logits = self.players.teacher(torch.cat(views))
        leaf = merged_log_probs([z.float() for z in logits], self.tt)
        n_u = len(views[0]) if wants_u else 0
        pseudo = None
        if wants_p:
            conf, labels = leaf[n_u:].max(dim=1)
            pseudo = (views[-1], labels, (conf.exp() >= g.confidence).float())
        return (leaf[:n_u] if wants_u else None), pseudo

    def _generate(self) -> tuple[Tensor, Tensor]:
        """G's pairs ``(G(z, y_g), y_g)``, leaves uniform over the tree (graph kept for G)."""
        assert self.players.generator is not None
        n_g = self.config.batch_size
        z = torch.randn(
            n_g, self.config.architecture.latent_dim, device=self.device, generator=self.rng
        )
        y_g = self._pick(self.tree.num_leaves, n_g)
        with self._autocast():
            fake = self.players.generator(z, y_g)
        if self.channels_last:
            fake = fake.contiguous(memory_format=torch.channels_last)
        return fake, y_g

    def _adversarial_rounds(
        self,
        x_l: Tensor,
        y_l: Tensor,
        pseudo: tuple[Tensor, Tensor, Tensor] | None,
        x_u: Tensor,
        log_p_u: Tensor,
        fake: Tensor,
        y_g: Tensor,
        terms: dict[str, Tensor],
    ) -> Tensor:
        """D's update(s) then G's; D's scores of every leaf on ``x_u`` for C's term."""
        pl, g = self.players, self.game
        assert pl.discriminator is not None and pl.opt_d is not None and pl.opt_g is not None
        real = (x_l, y_l, torch.ones(len(x_l), device=self.device))
        if pseudo is not None:  # teacher-labelled pairs count where the teacher is confident
            real = tuple(torch.cat([a, b]) for a, b in zip(real, pseudo, strict=True))
        pair = losses.PairLoss(self.config.loss)
        s_all_u, d_terms = rounds.discriminator_round(
            pl.discriminator,
            pl.opt_d,
            pair,
            real,
            (fake, y_g),
            x_u,
            log_p_u.exp(),
            g.alpha,
            g.d_steps,
            self._autocast,
        )
        g_terms = rounds.generator_round(
            pl.discriminator,
            pl.opt_g,
            pair,
            fake,
            y_g,
            self._autocast,
            guide=lambda images: self._nll_of(pl.teacher, images, y_g),  # frozen judge
            guide_weight=g.guide_weight * self._ramp(g.guide_start, g.guide_ramp),
        )
        terms.update(d_terms | g_terms)
        return s_all_u

    def _unlabelled_terms(
        self,
        log_p_u: Tensor | None,
        strong_logits: list[Tensor],
        teacher_u: Tensor | None,
        s_all_u: Tensor | None,
    ) -> dict[str, Tensor]:
        """C's unlabelled-data term and its adversarial term."""
        out: dict[str, Tensor] = {}
        g, kind = self.game, self.game.unlabelled
        w_d = g.teacher_d_weight * self._ramp(g.teacher_d_start, g.teacher_d_ramp)
        if teacher_u is not None and s_all_u is not None and w_d > 0:  # D joins the teacher
            teacher_u = merge_log_probs(teacher_u, torch.log_softmax(s_all_u.float(), 1), w_d)
        if kind == "pseudo-label" and teacher_u is not None and strong_logits:
            out["c_unlabelled"], out["c_confident_share"] = losses.pseudo_label(
                strong_logits, teacher_u, g.confidence, self.tt, self.weights
            )
        elif kind == "mean-teacher" and teacher_u is not None and log_p_u is not None:
            out["c_unlabelled"] = losses.consistency(log_p_u.exp(), teacher_u.exp())
        elif kind == "entropy" and log_p_u is not None:
            out["c_unlabelled"] = losses.entropy(log_p_u)
        if s_all_u is not None and log_p_u is not None and self.game.adversarial_weight > 0:
            pair = losses.PairLoss(self.config.loss)
            out["c_adversarial"] = losses.classifier_adversarial(pair, log_p_u.exp(), s_all_u)
        return out

    def _rp_term(self, fake: Tensor, y_g: Tensor) -> Tensor:
        """R_P: C's hierarchical cross-entropy on G's pairs (G gets no gradient)."""
        if self._ramp(self.game.rp_start, self.game.rp_ramp) == 0.0:
            return torch.zeros((), device=self.device)
        with batch_stats_frozen(self.players.classifier):
            return self._nll_of(self.players.classifier, fake.detach(), y_g)

    def _nll_of(self, model: torch.nn.Module, images: Tensor, leaves: Tensor) -> Tensor:
        """``model``'s hierarchical cross-entropy of ``images`` towards ``leaves``.

        R_P (C on G's pairs) and G's guide (the EMA teacher, frozen: only the images get a
        gradient, so G learns to draw what C calls ``y`` and C learns nothing from it).
        """
        with self._autocast():
            logits = model(images)
        return conditional_nll(
            [z.float() for z in logits], self.tt.leaf_paths[leaves], self.tt, self.weights
        )

    def _classifier_update(self, terms: dict[str, Tensor]) -> Tensor:
        """Weighted, ramped sum of C's terms; one optimiser step; the teacher follows."""
        g, pl = self.game, self.players
        adversarial = self._ramp(g.adversarial_start, g.adversarial_ramp)
        scale = {
            "c_labelled": 1.0,
            "c_unlabelled": g.unlabelled_weight * self._ramp(0, g.unlabelled_ramp),
            "c_adversarial": g.adversarial_weight * g.alpha * adversarial,
            "c_rp": g.rp_weight * self._ramp(g.rp_start, g.rp_ramp),
        }
        loss = sum(scale[k] * v for k, v in terms.items() if k in scale)  # others are logged only
        assert isinstance(loss, Tensor)
        total, t = self.config.steps, self.step
        warm = min(1.0, (t + 1) / g.lr_warmup) if g.lr_warmup else 1.0
        lr_scale = warm * 0.5 * (1 + math.cos(math.pi * t / total))
        decay = g.ema_decay_warmup if t < g.ema_warmup else g.ema_decay
        # early on the teacher follows closely: an average over the steps so far (TF's num_updates)
        pl.step_classifier(
            loss, [lr * lr_scale for lr in self.base_lrs], min(decay, (1 + t) / (10 + t))
        )
        return loss.detach()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: networks, optimisers, teacher, step, RNG states."""
        return {
            "run_key": self.run_key,
            "step": self.step,
            "players": self.players.state_dict(),
            "rng": rng_state(self.rng),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.players.load_state_dict(state["players"])
        restore_rng_state(self.rng, state["rng"])
        self.step = int(state["step"])

    def checkpoint(self) -> Path:
        """Write the checkpoint now (atomically)."""
        return write_checkpoint(self.state_dict(), self.run_dir, self.step, self.callbacks)

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = True, deadline: float | None = None) -> GameResult:
        """Play to ``config.steps``, resuming from the run directory's checkpoint if any.

        Args:
            resume: continue a checkpoint of this very run when there is one.
            deadline: a ``time.monotonic()`` instant; the game stops there (``truncated``).
        """
        resumed_from = self._resume() if resume else 0
        started = time.perf_counter()
        history: list[dict[str, float]] = []
        truncated = False
        while self.step < self.config.steps:
            if deadline is not None and time.monotonic() > deadline:
                truncated = True
                break
            terms = self.train_step()
            self.step += 1
            if self.step % self.config.log_every == 0 or self.step == self.config.steps:
                metrics = {k: float(v) for k, v in terms.items()}
                history.append({"step": float(self.step)} | metrics)
                for cb in self.callbacks:
                    cb.on_log(self.step, metrics)
            if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
                self.checkpoint()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return GameResult(
            players=self.players,
            steps=self.step,
            resumed_from=resumed_from,
            seconds=time.perf_counter() - started,
            labelled_indices=self.labelled,
            truncated=truncated,
            history=history,
        )

    def _resume(self) -> int:
        state = load_checkpoint(self.run_dir, self.run_key)
        if state is None:
            return 0
        self.load_state_dict(state)
        logger.info("Resuming triple game %s at step %d", self.run_key, self.step)
        return self.step
