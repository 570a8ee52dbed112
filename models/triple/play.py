"""The game as the train pipeline plays it: a resumable run, then the finished classifier.

:func:`play_triple_game` plays on the train split (labels: the classifier's ``label_fraction``),
hands over C's EMA as a :class:`~models.classifier.TrainedClassifier` that the pipeline then
calibrates, evaluates, packages and registers like any other, G and D as a
:class:`~models.gan.TrainedGan`, G's samples per tree node (one grid per level), the conditional
fidelity per level, and (when configured) how much merging D's classifier into C's gains on val.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models.classifier.config import ClassifierConfig
from models.classifier.io import TrainedClassifier
from models.classifier.network import HierarchicalClassifier, predict_logits
from models.data.dataset import LabelledImages
from models.gan.io import TrainedGan
from models.gan.pretrain import PretrainGanConfig
from models.gan.training import TrainerCallback
from models.gan.triple_config import TripleConfig
from models.runtime.tensors import map_image_batches
from models.tree.merge import TreeTensors, merged_log_probs
from models.triple.game import TripleGame
from models.triple.merge import fit_merge_weight
from models.triple.pictures import conditional_fidelity, leaf_spread, level_grids
from models.triple.players import Players

logger = logging.getLogger(__name__)


@dataclass
class TripleOutcome:
    """What the game hands to the rest of the pipeline."""

    gan: TrainedGan
    classifier: TrainedClassifier
    grids: dict[str, bytes] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def grids_png(self) -> bytes:
        """Every level's grid, stacked top to bottom, as one PNG (the step's visualization)."""
        from PIL import Image

        images = [Image.open(io.BytesIO(png)).convert("RGB") for png in self.grids.values()]
        width = max(im.width for im in images)
        canvas = Image.new("RGB", (width, sum(im.height for im in images)), "white")
        top = 0
        for im in images:
            canvas.paste(im, (0, top))
            top += im.height
        buf = io.BytesIO()
        canvas.save(buf, "PNG")
        return buf.getvalue()


def play_triple_game(
    data: LabelledImages,
    config: PretrainGanConfig,
    classifier: ClassifierConfig,
    callbacks: Sequence[TrainerCallback] = (),
    trunk_state: dict[str, torch.Tensor] | None = None,
) -> TripleOutcome:
    """Play the game on the train split; C (its EMA) comes out as a finished classifier.

    Watches the val split only (accuracy, the merge weight); the test split is not read. A
    checkpoint of the same run under ``config.checkpoint_root`` is resumed.

    Args:
        data: the dataset (train, val splits; ``test`` is not read).
        config: the game's settings (``mode: triple``).
        classifier: C's settings (its labels: ``label_fraction``).
        callbacks: told of logs and samples as the game goes (MLflow in the pipeline).
        trunk_state: a pretrained GAN discriminator's weights for C's trunk (what
            ``classifier.init: gan`` means in this mode; ``bench/results/label_efficiency.md``:
            +1 point at 1 % labels over a random trunk), or ``None`` (a random trunk).
    """
    config = config.for_data(data.image_shape, data.hierarchy.num_leaves)
    game_cfg = config.triple or TripleConfig()
    tree = data.hierarchy
    train_x, train_y = data.split("train")
    val_x, val_y = data.split("val")
    game = TripleGame(
        config,
        classifier,
        tree,
        train_x,
        train_y,
        config.checkpoint_root,
        data.content_hash,
        callbacks=callbacks,
        trunk_state=trunk_state,
    )
    result = game.fit(resume=config.resume)
    pl = result.players
    tt = TreeTensors(tree, game.device)
    val_c = merged_log_probs(predict_logits(pl.teacher, val_x), tt)
    info: dict[str, Any] = {
        "mode": "triple",
        "embedding": game_cfg.embedding,
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "train_seconds": round(result.seconds, 1),
        "device": str(game.device),
        "run_key": game.run_key,
        "dataset_hash": data.content_hash,
        "labelled_images": int(len(result.labelled_indices)),
        "label_fraction": classifier.label_fraction,
        "trunk": "gan" if trunk_state is not None else "scratch",
        "val_fine_accuracy_ema": _accuracy(val_c, val_y),
        "val_fine_accuracy_student": _accuracy(
            merged_log_probs(predict_logits(pl.classifier, val_x), tt), val_y
        ),
    }
    grids: dict[str, bytes] = {}
    gan = TrainedGan(config.architecture, {}, {}, info)  # C alone: no generator to hand over
    if pl.generator is not None and pl.discriminator is not None:
        info |= _generator_facts(data, config, classifier, pl, val_c)
        grids = level_grids(pl.generator, tree, seed=config.seed)
        gan = TrainedGan.from_conditional(pl.generator, pl.discriminator, tree, info)
    logger.info("Triple game: %s", info)
    c_info = info | {"init": "triple", "gan_run_key": game.run_key}
    c_info["val_fine_accuracy_uncalibrated"] = info["val_fine_accuracy_ema"]
    c_config = classifier.model_copy(update={"init": info["trunk"]})  # where C's trunk started
    outcome = TripleOutcome(
        gan, TrainedClassifier.from_model(pl.teacher, c_config, tree, c_info), grids, info
    )
    if grids:
        outcome.gan.samples_png = outcome.grids_png()
    return outcome


def _generator_facts(
    data: LabelledImages,
    config: PretrainGanConfig,
    classifier: ClassifierConfig,
    players: Players,
    val_c: torch.Tensor,
) -> dict[str, Any]:
    """Conditional fidelity per level and, if configured, D merged with C (fitted on val)."""
    game_cfg = config.triple or TripleConfig()
    assert players.generator is not None and players.discriminator is not None
    judge, judged_by = _judge(data, config, classifier, players.teacher)
    facts: dict[str, Any] = conditional_fidelity(
        players.generator,
        data.hierarchy,
        judge,
        game_cfg.samples_per_leaf,
        config.seed,
        real_spread=leaf_spread(*data.split("train"), data.hierarchy.num_leaves),
    )
    facts["fidelity_judged_by"] = judged_by
    if game_cfg.merge_discriminator:
        val_x, val_y = data.split("val")
        d = players.discriminator
        log_d = torch.log_softmax(torch.cat(map_image_batches(d, d.leaf_logits, val_x, 1024)), 1)
        weight, by_w = fit_merge_weight(val_c.cpu(), log_d.float().cpu(), torch.from_numpy(val_y))
        facts |= {"merge_weight_on_val": weight, "merge_val_gain": by_w[weight] - by_w[0.0]}
    return facts


def _accuracy(log_p: torch.Tensor, labels: np.ndarray) -> float:
    return round(float((log_p.argmax(1).cpu().numpy() == labels).mean()), 4)


def _judge(
    data: LabelledImages,
    config: PretrainGanConfig,
    classifier: ClassifierConfig,
    teacher: HierarchicalClassifier,
) -> tuple[Any, str]:
    """Who judges G's samples: a classifier trained on all train labels, else the game's C."""
    game_cfg = config.triple or TripleConfig()
    steps = game_cfg.fidelity_reference_steps
    judge_model = teacher
    judged_by = "the game's own classifier (C's EMA)"
    if steps > 0:
        alone = game_cfg.model_copy(update={"generative": False, "unlabelled": "none"})
        ref_cfg = config.model_copy(update={"triple": alone, "steps": steps})
        ref = TripleGame(
            ref_cfg,
            classifier.model_copy(update={"label_fraction": 1.0}),
            data.hierarchy,
            *data.split("train"),
            config.checkpoint_root,
            data.content_hash,
        )
        judge_model = ref.fit(resume=config.resume).players.teacher
        judged_by = f"a reference classifier trained on all train labels ({steps} steps)"
    tt = TreeTensors(data.hierarchy, next(judge_model.parameters()).device)

    def judge(images: np.ndarray) -> np.ndarray:
        return merged_log_probs(predict_logits(judge_model, images), tt).exp().cpu().numpy()

    return judge, judged_by
