"""The Triple-GAN game: every player learns, a killed run resumes bitwise, the pipeline's run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.label_efficiency_arms import ValCurve
from models.classifier.config import ClassifierConfig
from models.classifier.network import fine_accuracy
from models.data.dataset import LabelledImages
from models.gan.config import GanTrainConfig
from models.gan.networks import GanArchitecture
from models.gan.pretrain import PretrainGanConfig, pretrain_gan
from models.gan.training import TrainerCallback
from models.runtime.checkpoint import CheckpointError
from models.tree.merge import TreeTensors
from models.triple import TripleGame, TripleInputError, play_triple_game
from models.triple import losses as triple_losses
from tests.toy_models import TREE, square_images

ARCH = GanArchitecture(latent_dim=8, g_width=8, d_width=8, spectral_norm=True)
GAME = {
    "labelled_batch": 16,
    "unlabelled_batch": 32,
    "pseudo_real_batch": 8,
    "pseudo_real_start": 2,
    "adversarial_start": 1,
    "adversarial_ramp": 3,
    "rp_start": 2,
    "rp_ramp": 2,
    "unlabelled_ramp": 2,
    "ema_warmup": 2,
    "samples_per_leaf": 4,
}


def game_config(steps: int = 8, **triple: object) -> GanTrainConfig:
    return GanTrainConfig(
        mode="triple",
        loss="hinge",
        architecture=ARCH,
        steps=steps,
        batch_size=16,
        checkpoint_every=4,
        log_every=1,
        num_threads=1,
        triple=GAME | triple,
    )


def classifier_config(**update: object) -> ClassifierConfig:
    base = dict(init="scratch", hidden=16, feature_pool=2, label_fraction=0.2, num_threads=1)
    return ClassifierConfig(**(base | update))


def make_game(root: Path, steps: int = 8, callbacks=(), **triple: object) -> TripleGame:
    images, labels = square_images(200)
    return TripleGame(
        game_config(steps, **triple),
        classifier_config(),
        TREE,
        images,
        labels,
        root,
        "hash",
        callbacks=callbacks,
    )


def _snapshot(game: TripleGame) -> dict[str, torch.Tensor]:
    out = {}
    for name, module in game.players.modules().items():
        state = module.state_dict()
        if isinstance(module, torch.optim.Optimizer):
            state = {
                f"{pid}.{k}": v
                for pid, st in state["state"].items()
                for k, v in st.items()
                if torch.is_tensor(v)
            }
        out |= {f"{name}.{k}": v.detach().clone() for k, v in state.items()}
    return out


def test_every_player_learns_and_every_term_is_on(tmp_path: Path) -> None:
    game = make_game(tmp_path)
    before = _snapshot(game)
    result = game.fit()
    after = _snapshot(game)
    for prefix in ("classifier.", "teacher.", "generator.", "discriminator."):
        changed = [
            k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])
        ]
        assert changed, f"{prefix} did not change"
    last = result.history[-1]
    for term in (
        "d_loss",
        "d_real",
        "d_gen",
        "d_c_pairs",
        "g_loss",
        "c_labelled",
        "c_unlabelled",
        "c_adversarial",
        "c_rp",
        "c_loss",
    ):
        assert np.isfinite(last[term]), term
    assert last["c_rp"] > 0  # after rp_start R_P is on
    assert result.steps == 8 and not result.truncated
    assert (game.run_dir / "checkpoint.pt").exists()


def test_c_alone_plays_without_generator_or_discriminator(tmp_path: Path) -> None:
    game = make_game(tmp_path, generative=False, unlabelled="entropy")
    result = game.fit()
    assert result.players.generator is None and result.players.discriminator is None
    assert set(game.state_dict()["players"]) == {"classifier", "teacher", "opt_c"}
    assert "g_loss" not in result.history[-1] and "c_unlabelled" in result.history[-1]


def test_randaugment_view_feeds_the_pseudo_label_term(tmp_path: Path) -> None:
    # confidence 0: every unlabelled image gets the teacher's label, so the term is on at once
    common: dict[str, object] = {"steps": 4, "generative": False, "confidence": 0.0}
    default = make_game(tmp_path / "a", **common).fit()
    harder = make_game(tmp_path / "b", strong_view="randaugment", **common).fit()
    last, other = harder.history[-1], default.history[-1]
    assert np.isfinite(last["c_unlabelled"]) and last["c_unlabelled"] > 0
    # the same seed and batches: only the student's view differs, so the term does too
    assert last["c_unlabelled"] != other["c_unlabelled"]


def test_d_joins_the_pseudo_label_teacher_after_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    game = make_game(tmp_path, teacher_d_weight=1.0, teacher_d_start=3, teacher_d_ramp=0)
    n, leaves = 5, TREE.num_leaves
    teacher = torch.log_softmax(torch.zeros(n, leaves).index_fill(1, torch.tensor([0]), 9.0), 1)
    d_scores = torch.zeros(n, leaves).index_fill(1, torch.tensor([1]), 9.0)  # D says leaf 1
    strong = [torch.zeros(n, k) for k in TREE.level_sizes]
    seen: list[torch.Tensor] = []

    def capture(_strong, teacher_log_p, *_args):
        seen.append(teacher_log_p.argmax(1))
        return torch.zeros(()), torch.ones(())

    monkeypatch.setattr(triple_losses, "pseudo_label", capture)
    for step in (2, 3):  # before D's start the EMA teacher alone labels; from it, D weighs 1
        game.step = step
        game._unlabelled_terms(None, strong, teacher, d_scores)
    assert seen[0].tolist() == [0] * n and seen[1].tolist() == [1] * n


class KillAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        if step == self.step:
            raise KeyboardInterrupt("killed")


def test_a_killed_game_resumes_bitwise(tmp_path: Path) -> None:
    straight = make_game(tmp_path / "a")
    straight.fit()
    killed = make_game(tmp_path / "b", callbacks=[KillAt(6)])  # after the checkpoint at 4
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    resumed = make_game(tmp_path / "b")
    result = resumed.fit()
    assert result.resumed_from == 4 and result.steps == 8
    a, b = _snapshot(straight), _snapshot(resumed)
    assert a.keys() == b.keys() and any(k.startswith("opt_d.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_the_studys_val_curve_scores_the_teacher_at_every_log_and_changes_nothing(
    tmp_path: Path,
) -> None:
    plain = make_game(tmp_path / "a")
    plain.fit()
    watched = make_game(tmp_path / "b")
    held_x, held_y = square_images(60, seed=1)
    tt = TreeTensors(TREE, watched.device)
    curve = ValCurve(watched, held_x, held_y, tt)
    watched.callbacks.append(curve)
    watched.fit()
    assert [step for step, _ in curve.points] == list(range(1, 9))  # log_every=1
    assert all(0.0 <= fine <= 1.0 for _, fine in curve.points)
    last = fine_accuracy(watched.players.teacher, tt, held_x, held_y)
    assert curve.points[-1][1] == round(last, 4)  # the teacher as it ended
    a, b = _snapshot(plain), _snapshot(watched)
    for key in a:  # scoring took no random draw and left every player as it was
        assert torch.equal(a[key], b[key]), key


def test_checkpoint_of_another_game_is_refused(tmp_path: Path) -> None:
    make_game(tmp_path, steps=4).fit()
    other = make_game(tmp_path, steps=4)
    other.run_dir = next(tmp_path.iterdir())
    other.run_key = "someone-else"
    with pytest.raises(CheckpointError, match="belongs to another run"):
        other.fit()


def test_a_deadline_stops_the_game_and_says_so(tmp_path: Path) -> None:
    result = make_game(tmp_path).fit(deadline=0.0)
    assert result.truncated and result.steps == 0


def test_game_refuses_bad_input_before_training(tmp_path: Path) -> None:
    images, labels = square_images(200)
    with pytest.raises(TripleInputError, match="needs labels"):
        TripleGame(game_config(), classifier_config(), TREE, images, None, tmp_path)
    no_shirt = labels != TREE.leaf_index("Shirt")
    with pytest.raises(TripleInputError, match="'Shirt'"):
        TripleGame(
            game_config(), classifier_config(), TREE, images[no_shirt], labels[no_shirt], tmp_path
        )
    with pytest.raises(ValueError, match="gan.mode=triple"):
        TripleGame(GanTrainConfig(), classifier_config(), TREE, images, labels, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing was written


def _dataset() -> LabelledImages:
    images, labels = square_images(300)
    idx = np.arange(300)
    return LabelledImages(
        "squares",
        images,
        labels,
        TREE,
        {"train": idx[:200], "val": idx[200:260], "test": idx[260:]},
    )


def test_the_pipeline_run_hands_over_a_finished_classifier(tmp_path: Path) -> None:
    config = PretrainGanConfig(
        **game_config(steps=6).model_dump(exclude={"triple"}),
        triple=GAME | {"fidelity_reference_steps": 3},
        checkpoint_root=str(tmp_path),
    )
    outcome = play_triple_game(_dataset(), config, classifier_config())
    classifier = outcome.classifier
    assert classifier.info["init"] == "triple" and classifier.info["steps"] == 6
    probs = classifier.predict_proba(square_images(20, seed=3)[0])
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    info = outcome.info
    assert {"fidelity_category", "fidelity_group", "fidelity_item", "fidelity_fine"} <= set(info)
    assert "reference classifier" in info["fidelity_judged_by"]
    assert 0.0 <= info["merge_weight_on_val"] <= 1.0
    assert list(outcome.grids) == list(TREE.level_names)
    assert all(png.startswith(b"\x89PNG") for png in outcome.grids.values())
    assert outcome.gan.conditioning is not None and outcome.gan.samples_png.startswith(b"\x89PNG")
    classifier.save(tmp_path / "c")  # a classifier like any other: it saves and builds
    assert (tmp_path / "c" / "classifier.safetensors").exists()


def test_c_starts_from_the_pretrained_trunk_it_is_given(tmp_path: Path) -> None:
    from models.gan.networks import Discriminator
    from models.triple.players import classifier_architecture

    torch.manual_seed(123)
    pretrained = Discriminator(classifier_architecture(ARCH)).state_dict()
    config = PretrainGanConfig(
        **game_config(steps=4).model_dump(exclude={"triple"}),
        triple=GAME,
        checkpoint_root=str(tmp_path),
    )
    # a trunk learning rate of ~0: whatever C's trunk holds after the game is where it started
    slow_trunk = classifier_config(trunk_lr_scale=1e-12)
    outcome = play_triple_game(_dataset(), config, slow_trunk, trunk_state=pretrained)
    assert outcome.info["trunk"] == "gan" and outcome.classifier.config.init == "gan"
    trunk = outcome.classifier.build().backbone.state_dict()
    convs = [k for k, v in pretrained.items() if k.startswith("trunk.") and v.ndim == 4]
    assert convs
    for key in convs:
        torch.testing.assert_close(trunk[key], pretrained[key], atol=1e-6, rtol=0)
    scratch = play_triple_game(_dataset(), config, slow_trunk)
    assert scratch.info["trunk"] == "scratch" and scratch.info["run_key"] != outcome.info["run_key"]
    assert not torch.allclose(
        scratch.classifier.build().backbone.state_dict()[convs[0]], pretrained[convs[0]]
    )


def test_pretrain_gan_points_triple_mode_to_the_game(tmp_path: Path) -> None:
    config = PretrainGanConfig(mode="triple", checkpoint_root=str(tmp_path))
    with pytest.raises(ValueError, match="play_triple_game"):
        pretrain_gan(_dataset(), config)


def test_the_guide_moves_g_towards_the_teachers_label_and_leaves_the_teacher_alone(
    tmp_path: Path,
) -> None:
    game = make_game(tmp_path, guide_weight=1.0, guide_start=0, guide_ramp=0)
    result = game.fit()
    assert np.isfinite(result.history[-1]["g_guide"])
    unguided = make_game(tmp_path / "plain").fit()
    assert "g_guide" not in unguided.history[-1]

    pl = game.players
    assert pl.generator is not None
    z = torch.randn(6, ARCH.latent_dim)
    leaves = torch.arange(6) % TREE.num_leaves
    pl.generator.zero_grad()
    game._nll_of(pl.teacher, pl.generator(z, leaves), leaves).backward()
    assert all(p.grad is None for p in pl.teacher.parameters())  # a frozen judge
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in pl.generator.parameters())
