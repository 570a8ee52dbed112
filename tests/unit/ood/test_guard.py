"""Fitting the guard, its threshold, and its trip through the classifier artifact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.classifier.io import TrainedClassifier
from models.ood import GuardedPredictor, OodGuard, score_images, scorer_parts
from models.ood.evaluate import auroc
from tests.toy_models import square_images

# two float32 computations of a cosine near 1 may differ by a few of its steps (2^-24 each)
KNN_ROUNDING = 8 * 2.0**-24


def test_threshold_passes_the_configured_share_of_validation(toy_guarded) -> None:
    _, guard, val = toy_guarded
    assert guard.parts == scorer_parts("knn_complexity", ["category", "group", "item"], True)
    assert guard.parts == ["knn", "complexity"]
    assert np.mean(val.score <= guard.threshold) == pytest.approx(0.95, abs=0.01)
    assert guard.info["val_flagged_share"] == pytest.approx(0.05, abs=0.01)


def test_noise_scores_above_the_toy_data(toy_guarded, noise_images) -> None:
    classifier, guard, val = toy_guarded
    noise = score_images(classifier, guard, noise_images)
    test_x, _ = square_images(200, seed=5)
    clean = score_images(classifier, guard, test_x)
    assert auroc(clean.score, noise.score) > 0.95
    assert np.mean(noise.score > guard.threshold) > 0.9
    for name in ("maha_neck_item", "maha_trunk_item", "knn", "complexity"):
        assert auroc(clean.components[name], noise.components[name]) > 0.95, name


def test_guard_survives_save_and_load(toy_guarded, noise_images, tmp_path) -> None:
    classifier, guard, _ = toy_guarded
    classifier.save(tmp_path)
    meta = json.loads((tmp_path / "ood.json").read_text())
    assert meta["scorer"] == "knn_complexity" and meta["threshold"] == guard.threshold
    assert meta["neighbours"] == {"layer": "neck", "k": guard.knn_k, "count": 400, "leaves": 1}
    assert meta["pixels"]["density"] == "diagonal" and meta["pixels"]["compressor"] == "zlib"
    loaded = TrainedClassifier.load(tmp_path)
    again = OodGuard.from_classifier(loaded)
    assert again is not None and again.discriminator is not None
    a = score_images(classifier, guard, noise_images[:20])
    b = score_images(loaded, again, noise_images[:20])
    np.testing.assert_allclose(a.score, b.score, rtol=1e-5)


def test_an_artifact_without_guard_loads_and_answers_none(toy_guarded, tmp_path) -> None:
    classifier, _, _ = toy_guarded
    plain = TrainedClassifier(
        classifier.architecture, classifier.config, classifier.tree, classifier.state
    )
    plain.save(tmp_path)
    assert not (tmp_path / "ood.json").exists()
    loaded = TrainedClassifier.load(tmp_path)
    assert loaded.ood_info is None and OodGuard.from_classifier(loaded) is None
    predictor = GuardedPredictor(loaded)
    assert not predictor.has_guard
    answers = predictor.predict(square_images(3)[0])
    assert [a["ood"] for a in answers] == [None, None, None]


def test_predictor_answers_carry_the_verdict_from_one_pass(toy_guarded, noise_images) -> None:
    classifier, guard, _ = toy_guarded
    predictor = GuardedPredictor(classifier)
    images = np.concatenate([square_images(4, seed=7)[0], noise_images[:4]])
    answers = predictor.predict(images)
    # the served guard searches its kNN bank in two stages, in NumPy: the same neighbours, their
    # float32 products summed in another order. The toy's kNN distances (1 - cosine) are ~1e-5,
    # a few hundred float32 steps of the cosine, and their standardisation magnifies that
    full = score_images(classifier, predictor.guard, images)
    tolerance = 1e-3 + KNN_ROUNDING / guard.standardization["knn"][1]
    for answer, score in zip(answers, full.score, strict=True):
        assert set(answer["ood"]) == {"score", "threshold", "is_ood"}
        assert answer["ood"]["score"] == pytest.approx(float(score), abs=tolerance)
        assert answer["ood"]["is_ood"] == (score > guard.threshold)
    assert [a["ood"]["is_ood"] for a in answers[4:]] == [True] * 4
    # the same leaf probabilities as the unguarded path
    np.testing.assert_allclose(
        predictor.classify(images)[0], predictor.leaf_probs(images), rtol=1e-5, atol=1e-6
    )


def test_the_serving_pass_gives_the_evaluation_scores(toy_guarded, noise_images) -> None:
    classifier, guard, _ = toy_guarded
    assert "complexity" in guard.parts
    images = np.concatenate([square_images(4, seed=8)[0], noise_images[:4]])
    predictor = GuardedPredictor(classifier)
    probs, served = predictor.served_components(images)
    evaluated = score_images(classifier, predictor.guard, images, every_component=False)
    assert set(served) == set(guard.parts)
    for part in guard.parts:  # up to float32 rounding: of a cosine for kNN, else relative
        atol = KNN_ROUNDING if part == "knn" else 1e-4
        np.testing.assert_allclose(served[part], evaluated.components[part], 1e-5, atol, part)
    np.testing.assert_allclose(probs, evaluated.leaf_probs, rtol=1e-5, atol=1e-6)


def test_a_full_gaussian_with_png_lengths_serves_its_evaluation_scores(noise_images) -> None:
    """The pixel component as guards fitted before the diagonal + zlib default computed it."""
    from tests.toy_models import guarded_square_classifier

    classifier, guard, _ = guarded_square_classifier(pixel_density="full", compressor="png")
    assert guard.pixel_gaussian is not None and guard.pixel_gaussian.density == "full"
    images = np.concatenate([square_images(4, seed=8)[0], noise_images[:4]])
    _, served = GuardedPredictor(classifier).served_components(images)
    evaluated = score_images(classifier, guard, images, every_component=False)
    np.testing.assert_allclose(served["complexity"], evaluated.components["complexity"], 1e-5)
    # an artifact from before the choice has no "density" or "compressor": full, PNG
    meta = json.loads(json.dumps(classifier.ood_info))
    del meta["pixels"]["density"], meta["pixels"]["compressor"]
    older = OodGuard.from_artifact(classifier.ood_state, meta)
    assert older.pixel_gaussian is not None and older.pixel_gaussian.compressor == "png"
    meta["pixels"]["compressor"] = "jpeg"
    with pytest.raises(ValueError, match="unknown pixels.compressor 'jpeg'"):
        OodGuard.from_artifact(classifier.ood_state, meta)
    meta["pixels"]["compressor"] = "png"
    state = dict(classifier.ood_state) | {"pixels.precision": torch.ones(783)}
    with pytest.raises(ValueError, match=r"precision has shape \[783\], expected \[784\]"):
        OodGuard.from_artifact(state, meta)


def test_a_damaged_ood_file_is_refused(toy_guarded) -> None:
    classifier, _, _ = toy_guarded
    state = dict(classifier.ood_state)
    state.pop(next(k for k in state if k.startswith("gaussian.")))
    with pytest.raises(ValueError, match="ood.safetensors lacks"):
        OodGuard.from_artifact(state, classifier.ood_info)
    with pytest.raises(ValueError, match="unknown format"):
        OodGuard.from_artifact(classifier.ood_state, {**classifier.ood_info, "format": 99})


def test_every_scorer_serves_from_the_same_statistics(toy_guarded, noise_images) -> None:
    from models.ood import SCORERS
    from models.ood.fit import with_scorer

    classifier, guard, val = toy_guarded
    test_x, _ = square_images(200, seed=5)
    clean = score_images(classifier, guard, test_x)
    noise = score_images(classifier, guard, noise_images)
    for scorer in SCORERS:
        other = with_scorer(guard, scorer, val.components, 0.95)
        comps = {k: torch.from_numpy(v) for k, v in clean.components.items()}
        served = other.combine(comps).numpy()
        assert np.mean(served > other.threshold) < 0.15, scorer  # ~5 % of in-distribution
        noisy = other.combine({k: torch.from_numpy(v) for k, v in noise.components.items()})
        assert np.isfinite(noisy.numpy()).all(), scorer


def test_a_guard_saved_before_knn_and_complexity_still_serves(toy_guarded, noise_images) -> None:
    from models.ood.fit import with_scorer

    classifier, guard, val = toy_guarded
    old = with_scorer(guard, "combined", val.components, 0.95)
    state, meta = old.to_artifact()
    # what the first guard wrote: no neighbours, no pixel Gaussian
    state = {k: v for k, v in state.items() if not k.startswith(("neighbours", "pixels."))}
    meta = {k: v for k, v in meta.items() if k not in ("neighbours", "pixels")}
    again = OodGuard.from_artifact(state, meta)
    assert again.neighbours is None and again.pixel_gaussian is None
    a = score_images(classifier, old, noise_images[:8], every_component=False).score
    b = score_images(classifier, again, noise_images[:8], every_component=False).score
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_realness_needs_a_discriminator() -> None:
    with pytest.raises(ValueError, match="discriminator"):
        scorer_parts("realness", ["a", "b"], False)
    assert "realness" not in scorer_parts("combined", ["a", "b"], False)


def test_relative_mahalanobis_subtracts_the_background_gaussian(toy_guarded, noise_images) -> None:
    """rmd = the leaf Gaussians' distance minus that of one Gaussian over all fitted features."""
    from models.ood.fit import with_scorer
    from models.ood.guard import BACKGROUND

    classifier, guard, val = toy_guarded
    assert f"neck.{BACKGROUND}" in guard.gaussians and guard.levels == ["category", "group", "item"]
    means, _ = guard.gaussians[f"neck.{BACKGROUND}"]
    assert means.shape[0] == 1  # one mean: every training image in one class
    comps = score_images(classifier, guard, noise_images[:16]).components
    for level in guard.levels:
        np.testing.assert_allclose(
            comps[f"rmd_neck_{level}"],
            comps[f"maha_neck_{level}"] - comps[f"maha_neck_{BACKGROUND}"],
            rtol=1e-6,
        )
    # served alone, the scorer computes what it reads and nothing more
    rmd = with_scorer(guard, "rmd_complexity", val.components, 0.95)
    assert rmd.parts == ["rmd_neck_item", "complexity"]
    served = score_images(classifier, rmd, noise_images[:16], every_component=False)
    assert set(served.components) == {
        "rmd_neck_item",
        "maha_neck_item",
        f"maha_neck_{BACKGROUND}",
        "complexity",
    }
    np.testing.assert_allclose(
        served.components["rmd_neck_item"], comps["rmd_neck_item"], rtol=1e-6
    )
    # a guard fitted before the background Gaussian cannot serve it, and says why
    gaussians = {k: v for k, v in guard.gaussians.items() if not k.endswith(BACKGROUND)}
    older = OodGuard(gaussians, None, "knn_complexity", ["knn", "complexity"])
    older_val = {k: v for k, v in val.components.items() if not k.startswith("rmd_")}
    with pytest.raises(ValueError, match="cannot serve 'rmd_complexity'.*rmd_neck_item"):
        with_scorer(older, "rmd_complexity", older_val, 0.95)


def test_each_int8_runtime_gets_its_own_threshold_at_the_same_rate(toy_guarded) -> None:
    from models.calibration.activation_ranges import with_activation_ranges
    from models.ood.fit import with_runtime_thresholds

    classifier, guard, _ = toy_guarded
    # fitted without activation ranges: static-int8 would run dynamic-int8, so it has none
    assert set(guard.runtime_thresholds) == {"dynamic-int8"}
    assert guard.threshold_for("static-int8") == guard.threshold
    val_x, _ = square_images(200, seed=2)  # the fixture's val split
    ranged = with_activation_ranges(classifier, square_images(300, seed=1)[0])
    ranged = with_runtime_thresholds(ranged, val_x)
    again = OodGuard.from_classifier(ranged)
    assert again is not None and set(again.runtime_thresholds) == {"dynamic-int8", "static-int8"}
    for runtime in ("none", "dynamic-int8", "static-int8"):
        predictor = GuardedPredictor(ranged, quantization=runtime)
        assert predictor.threshold == again.threshold_for(runtime)
        _, scores = predictor.scores(val_x)
        # the share of val the served runtime passes at its own threshold
        assert np.mean(scores <= predictor.threshold) == pytest.approx(0.95, abs=0.01), runtime
        verdicts = predictor.classify(val_x[:20])[1]
        assert {v["threshold"] for v in verdicts} == {round(predictor.threshold, 4)}


def test_a_guard_saved_before_runtime_thresholds_serves_float32s(toy_guarded) -> None:
    from models.ood.fit import with_runtime_thresholds

    classifier, guard, _ = toy_guarded
    meta = {k: v for k, v in classifier.ood_info.items() if k != "runtime_thresholds"}
    old = OodGuard.from_artifact(classifier.ood_state, meta)
    assert old.runtime_thresholds == {}
    assert old.threshold_for("dynamic-int8") == old.threshold == guard.threshold
    plain = TrainedClassifier(
        classifier.architecture, classifier.config, classifier.tree, classifier.state
    )
    with pytest.raises(ValueError, match="no OOD guard"):
        with_runtime_thresholds(plain, square_images(10)[0])


def test_the_scorer_without_complexity_serves_from_the_neck_alone(noise_images) -> None:
    from tests.toy_models import guarded_square_classifier

    classifier, guard, val = guarded_square_classifier("knn_rmd")
    assert guard.parts == ["knn", "rmd_neck_item"]
    assert np.mean(val.score <= guard.threshold) == pytest.approx(0.95, abs=0.01)
    predictor = GuardedPredictor(classifier)
    images = np.concatenate([square_images(4, seed=8)[0], noise_images[:4]])
    # served at once from the neck (test_served_score.py holds the numbers to the components)
    _, served = predictor.served_components(images)
    assert set(served) == {"knn", "rmd_neck_item"}  # no compressed length, no pixel density
    _, scores = predictor.scores(images)
    # the kNN term's float32 rounding, which its standardisation magnifies on the toy
    atol = 1e-3 + KNN_ROUNDING / guard.standardization["knn"][1]
    np.testing.assert_allclose(scores, guard.combine(served), rtol=1e-4, atol=atol)
    assert [a["ood"]["is_ood"] for a in predictor.predict(images)[4:]] == [True] * 4
