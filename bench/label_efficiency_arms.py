"""The arms of the label-efficiency study, one job each, with torch alone (no MLOps stack).

Every arm trains the same classifier C (the product's hierarchical classifier, the
``classifier:`` section) for the same number of optimiser steps with the same optimiser,
augmentation and EMA evaluation; what differs is what else C learns from:

==================  ==============================================================================
``scratch``         labels only, random trunk
``scratch-ssl``     + the triple arms' unlabelled-data term (``triple.unlabelled``), no GAN
``gan``             labels only, trunk from an unsupervised GAN's discriminator (one GAN per study)
``gan-ssl``         scratch-ssl from the gan arm's trunk: pretraining and the unlabelled term
                    without the game, so that ``triple - gan-ssl`` is what the game itself adds
``gan-semi``        labels only, trunk from a semi-supervised (K+1) GAN trained on the same labels
``gan-semi-head``   that semi-supervised discriminator's own K-way head (no fine-tuning)
``triple``          the Triple-GAN game over the tree (hierarchical embedding, R_P, G's guide;
                    C's trunk from the gan arm's GAN with ``study.triple_trunk: gan``)
``triple-no-rp``    the game without R_P
``triple-flat``     the game with a flat leaf embedding in G and D
==================  ==============================================================================

A job writes ``<runs>/<name>.json`` (atomically) when it finishes; the reference classifier
(trained on all labels; it judges G's samples) and the GAN pretraining write their weights
beside it. A job given a deadline stops training there, evaluates, and says so (``truncated``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file
from torch import Tensor

from bench.label_efficiency_pace import COST, PROBE_FROM, PROBE_TO, Pace, rescaled
from models.classifier.config import ClassifierConfig
from models.classifier.network import HierarchicalClassifier, fine_accuracy, predict_logits
from models.data.dataset import LabelledImages, stratified_fraction
from models.data.ingest import DatasetConfig
from models.gan.callbacks import TrainerCallback
from models.gan.config import GanTrainConfig
from models.gan.training import GanTrainer
from models.gan.triple_config import TripleConfig
from models.tree.merge import TreeTensors, merged_log_probs
from models.triple.game import TripleGame
from models.triple.merge import fit_merge_weight, merge_log_probs
from models.triple.pictures import generate
from models.triple.players import classifier_architecture

ARMS = (
    "scratch",
    "scratch-ssl",
    "gan",
    "gan-ssl",
    "gan-semi",
    "gan-semi-head",
    "triple",
    "triple-no-rp",
    "triple-flat",
)


class StudyConfig(BaseModel):
    """``study:`` section: fractions, seeds, arms and budgets."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field("", description="what kind of run, e.g. 'reduced CPU study', in the title")
    seeds: dict[float, list[int]] = Field(
        default_factory=lambda: {0.01: [0, 1, 2], 0.1: [0]}, description="label fraction: seeds"
    )
    arms: list[str] = Field(default_factory=lambda: list(ARMS))
    steps: int = Field(3000, ge=1, description="C's optimiser steps in every arm")
    reference_steps: int = Field(3000, ge=1, description="the all-labels judge's steps")
    samples_per_leaf: int = Field(100, ge=1, description="G's samples per leaf for fidelity")
    triple_trunk: Literal["scratch", "gan"] = Field(
        "scratch",
        description="where the triple arms' C starts: a random trunk, or the unsupervised GAN's "
        "discriminator (the gan arm's pretraining, shared)",
    )
    curve_images: int = Field(
        2000,
        ge=0,
        description="val images C's EMA teacher is scored on at every tenth of an arm's steps: "
        "the learning curve that says whether an arm still gains at the budget (val, not test: "
        "a budget chosen from it is not chosen on the test split); 0: no curve",
    )


class StudyParams(BaseModel):
    """The config file's ``parameters``."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    gan: GanTrainConfig = Field(default_factory=GanTrainConfig, description="gan / gan-semi")
    triple: GanTrainConfig = Field(
        default_factory=lambda: GanTrainConfig(mode="triple", loss="hinge"),
        description="the triple arms' game (its steps are overridden by study.steps)",
    )
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)


def reads_pretrained_gan(arm: str, study: StudyConfig) -> bool:
    """Whether the arm's C starts from the unsupervised GAN's discriminator (``gan-pretrain``)."""
    return arm in ("gan", "gan-ssl") or (arm.startswith("triple") and study.triple_trunk == "gan")


def arm_game(params: StudyParams, arm: str, steps: int, device: str) -> GanTrainConfig:
    """The game config an arm plays (C alone for the non-triple arms)."""
    base = params.triple.triple or TripleConfig()
    update: dict[str, Any] = {}
    if arm in ("scratch", "gan", "gan-semi", "reference"):
        update = {"generative": False, "unlabelled": "none"}
    elif arm in ("scratch-ssl", "gan-ssl"):
        update = {"generative": False}
    elif arm == "triple-no-rp":
        update = {"rp_weight": 0.0}
    elif arm == "triple-flat":
        update = {"embedding": "flat"}
    elif arm != "triple":
        raise ValueError(f"unknown arm {arm!r}; known: {ARMS}")
    return params.triple.model_copy(
        update={
            "triple": base.model_copy(update=update),
            "steps": steps,
            "device": device,
            "progress": False,
            "checkpoint_every": max(steps, 1),
            "log_every": max(1, steps // 10),
        }
    )


def leaf_log_probs(model: HierarchicalClassifier, tt: TreeTensors, images: np.ndarray) -> Tensor:
    """``[N, n_leaves]`` merged leaf log-probabilities (eval mode, uncalibrated)."""
    return merged_log_probs(predict_logits(model, images), tt).cpu()


def scores(log_p: torch.Tensor, labels: np.ndarray, data: LabelledImages) -> dict[str, float]:
    """Accuracy at every level (global decoding), fine = the leaf level."""
    tree = data.hierarchy
    pred = log_p.argmax(1).numpy()
    out = {
        f"acc_{name}": float((tree.leaf_paths[pred, lv] == tree.leaf_paths[labels, lv]).mean())
        for lv, name in enumerate(tree.level_names)
    }
    return {
        "fine": out[f"acc_{tree.level_names[-1]}"],
        "coarse": out[f"acc_{tree.level_names[0]}"],
    } | out


class ValCurve(TrainerCallback):
    """C's EMA teacher's fine accuracy on held-out labelled images at every log of the game.

    The game logs every tenth of its steps; no random draw is taken, so the curve does not change
    the run it watches.
    """

    def __init__(
        self, game: TripleGame, images: np.ndarray, labels: np.ndarray, tt: TreeTensors
    ) -> None:
        self.game, self.images, self.labels, self.tt = game, images, labels, tt
        self.points: list[list[float]] = []  # [[step, fine accuracy], ...]

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        """Score the teacher as it is at ``step``."""
        fine = fine_accuracy(self.game.players.teacher, self.tt, self.images, self.labels)
        self.points.append([step, round(fine, 4)])


def run_classifier_arm(
    data: LabelledImages,
    params: StudyParams,
    arm: str,
    fraction: float,
    seed: int,
    pace: Pace,
    trunk_state: dict[str, torch.Tensor] | None = None,
) -> tuple[dict[str, Any], TripleGame]:
    """Train C as ``arm`` plays it (at the study's pace); its test scores, steps and seconds."""
    runs = pace.runs
    train_x, train_y = data.split("train")
    steps = params.study.reference_steps if arm == "reference" else params.study.steps
    config = arm_game(params, arm, steps, params.triple.device)
    config = config.model_copy(update={"seed": seed}).for_data(
        data.image_shape, data.hierarchy.num_leaves
    )
    cconfig = params.classifier.model_copy(
        update={
            "label_fraction": fraction,
            "seed": seed,
            "init": "gan" if trunk_state else "scratch",
        }
    )
    game = TripleGame(
        config,
        cconfig,
        data.hierarchy,
        train_x,
        train_y,
        weights_dir(runs) / "checkpoints",
        data.content_hash,
        trunk_state=trunk_state,
    )
    tt = TreeTensors(data.hierarchy, game.device)
    curve = None
    if params.study.curve_images:
        val_x, val_y = data.split("val")
        n = params.study.curve_images
        curve = ValCurve(game, val_x[:n], val_y[:n], tt)
        game.callbacks.append(curve)
    started = time.perf_counter()

    def measure() -> float:
        return _timed_steps(game.train_step, game, game.device)

    scale = 1.0  # short runs (--quick) are not paced
    if config.steps > 2 * PROBE_TO:
        scale = pace.scale(measure, COST[arm], leads=arm.startswith("triple"))
    game.config = rescaled(game.config, scale)
    game.game = game.config.triple or game.game
    remaining = None if pace.deadline is None else time.monotonic() + pace.deadline - time.time()
    result = game.fit(resume=False, deadline=remaining)
    seconds = time.perf_counter() - started
    test_x, test_y = data.split("test")
    teacher = result.players.teacher
    row = {
        "arm": arm,
        "labels": fraction,
        "seed": seed,
        "labelled": int(len(result.labelled_indices)),
        "steps": result.steps,
        "planned_steps": steps,
        "scale": round(scale, 4),
        "truncated": result.truncated,
        "seconds": round(seconds, 1),
        "device": str(game.device),
        "test_images": int(len(test_y)),
        **scores(leaf_log_probs(teacher, tt, test_x), test_y, data),
    }
    if curve is not None:
        row["val_curve"] = curve.points
    return row, game


def merge_discriminator(
    data: LabelledImages, c_model: HierarchicalClassifier, d_logits: Any, tt: TreeTensors
) -> dict[str, Any]:
    """Fit D's weight in the merge on val; the merged test scores (kept only if val improved)."""
    val_x, val_y = data.split("val")
    test_x, test_y = data.split("test")
    log_c_val, log_c_test = (leaf_log_probs(c_model, tt, x) for x in (val_x, test_x))
    log_d_val, log_d_test = (torch.log_softmax(d_logits(x), 1) for x in (val_x, test_x))
    weight, by_weight = fit_merge_weight(log_c_val, log_d_val, torch.from_numpy(val_y))
    merged = scores(merge_log_probs(log_c_test, log_d_test, weight), test_y, data)
    return {
        "merge_weight": weight,
        "merge_val_gain": round(by_weight[weight] - by_weight[0.0], 4),
        "merged_fine": merged["fine"],
        "merged_coarse": merged["coarse"],
    }


@torch.no_grad()
def batched_logits(net: Any, images: np.ndarray, fn: Any, device: torch.device) -> torch.Tensor:
    """``fn(net, x)`` over uint8 images in batches of 1000 (eval mode), on CPU."""
    net.eval()
    out = []
    for start in range(0, len(images), 1000):
        x = torch.from_numpy(images[start : start + 1000]).to(device).permute(0, 3, 1, 2)
        out.append(fn(net, x.float().div(127.5).sub(1.0)).float().cpu())
    return torch.cat(out)


def run_triple_extras(
    data: LabelledImages, game: TripleGame, params: StudyParams, name: str, runs: Path
) -> dict[str, Any]:
    """G's samples for fidelity (scored by the summary), and D merged with C."""
    pl = game.players
    assert pl.generator is not None and pl.discriminator is not None
    per_leaf = params.study.samples_per_leaf
    leaves = np.repeat(np.arange(data.hierarchy.num_leaves), per_leaf)
    np.savez_compressed(
        runs / f"{name}.samples.npz", images=generate(pl.generator, leaves, 1234), leaves=leaves
    )
    d = pl.discriminator

    def d_logits(x: np.ndarray) -> torch.Tensor:
        return batched_logits(d, x, lambda net, t: net.leaf_logits(t), game.device)

    return merge_discriminator(data, pl.teacher, d_logits, TreeTensors(data.hierarchy, game.device))


def job_name(arm: str, fraction: float, seed: int) -> str:
    """``triple-0.01-s0``: one job of the study."""
    return f"{arm}-{fraction:g}-s{seed}"


def parse_job(name: str) -> tuple[str, float, int]:
    """Inverse of :func:`job_name`; ValueError for a name not made by it."""
    arm, fraction, seed = name.rsplit("-", 2)
    return arm, float(fraction), int(seed[1:])


def pretraining_leads(study: StudyConfig, labelled: np.ndarray | None) -> bool:
    """Whether a GAN pretraining sets the study's pace (measures the scale at once).

    The shared unsupervised pretraining does when the triple arms, the pace-setters otherwise,
    wait for it (``study.triple_trunk: gan``): else every job would wait ``SCALE_WAIT_S`` for a
    scale that no running job writes.
    """
    return labelled is None and study.triple_trunk == "gan"


def pretrain_gan(
    data: LabelledImages,
    params: StudyParams,
    pace: Pace,
    labelled: np.ndarray | None,
    seed: int,
) -> tuple[GanTrainer, float, bool]:
    """An unsupervised GAN (``labelled=None``) or a semi-supervised one on ``labelled``.

    Returns the trainer, its seconds, and whether the deadline cut it short.
    """
    train_x, train_y = data.split("train")
    mode = "unsupervised" if labelled is None else "semi-supervised"
    config = params.gan.model_copy(
        update={"mode": mode, "seed": seed, "progress": False, "device": params.triple.device}
    ).for_data(data.image_shape, data.hierarchy.num_leaves)
    trainer = GanTrainer(
        config,
        train_x,
        weights_dir(pace.runs) / "checkpoints" / "gan",
        data.content_hash,
        labels=train_y,
        labelled_indices=labelled,
    )
    started = time.perf_counter()
    scale = 1.0
    if config.steps > 2 * PROBE_TO:
        scale = pace.scale(
            lambda: _timed_steps(trainer.train_step, trainer, trainer.device),
            COST["gan-step"],
            leads=pretraining_leads(params.study, labelled),
        )
    steps = rescaled(config, scale).steps
    # the loop itself (GanTrainer.train_step), without checkpoints and with the study's deadline
    truncated = False
    while trainer.step < steps:
        if pace.deadline is not None and time.time() > pace.deadline:
            truncated = True
            break
        trainer.train_step()
        trainer.step += 1
    return trainer, time.perf_counter() - started, truncated


def _timed_steps(train_step: Any, owner: Any, device: torch.device) -> float:
    """Steps per second of ``train_step`` between PROBE_FROM and PROBE_TO (they count)."""

    def run(n: int) -> None:
        for _ in range(n):
            train_step()
            owner.step += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    run(PROBE_FROM)
    started = time.perf_counter()
    run(PROBE_TO - PROBE_FROM)
    return (PROBE_TO - PROBE_FROM) / max(time.perf_counter() - started, 1e-9)


def weights_dir(runs: Path) -> Path:
    """Where a study's weights and checkpoints go: a temporary folder named after ``runs``.

    Results (JSON, G's samples) stay in ``runs``, which may be sent back from a remote machine;
    weights would only weigh it down.
    """
    digest = hashlib.sha1(str(runs.resolve()).encode()).hexdigest()[:10]
    path = Path(tempfile.gettempdir()) / f"hiergan-label-efficiency-{digest}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, obj: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a result."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def save_state(path: Path, module: torch.nn.Module) -> None:
    """A module's weights as safetensors (CPU, contiguous)."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    save_file(state, str(tmp))
    os.replace(tmp, path)


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """Inverse of :func:`save_state` (safetensors: no code runs)."""
    return load_file(str(path))


def reference_model(
    params: StudyParams, data: LabelledImages, path: Path
) -> HierarchicalClassifier:
    """The all-labels judge, rebuilt from its weights (CPU, eval mode)."""
    arch = classifier_architecture(
        params.triple.for_data(data.image_shape, data.hierarchy.num_leaves).architecture
    )
    model = HierarchicalClassifier(arch, data.hierarchy.level_sizes, params.classifier)
    model.load_state_dict(load_state(path))
    return model.eval()


def labelled_indices(data: LabelledImages, fraction: float, seed: int) -> np.ndarray:
    """The labelled subset every arm of ``(fraction, seed)`` uses (the classifier's choice)."""
    return stratified_fraction(data.split("train")[1], fraction, seed)
