"""The OOD benches' settings: ``ood:`` keys, and the held-out models' ``classifier:`` keys."""

from __future__ import annotations

import argparse

import pytest

from bench.ood_detection import heldout_classifier_config, served_config
from bench.ood_guard_ab import (
    DEFAULT_A,
    DEFAULT_B,
    b_side_models,
    parse_setting,
    setting_config,
    setting_name,
)


def test_a_setting_overrides_only_its_keys() -> None:
    args = argparse.Namespace(fit_images=300, scorer=None)
    base = served_config(args)
    setting = parse_setting(["knn_images=2500", "neighbours=5"])
    config = setting_config(args, setting)
    assert (config.knn_images, config.neighbours) == (2500, 5)
    kept = {"knn_images", "neighbours", "runtime_thresholds"}
    assert config.model_dump(exclude=kept) == base.model_dump(exclude=kept)
    assert config.runtime_thresholds == []  # one float pass per setting: no int8 thresholds
    assert setting_name(setting) == "knn_images=2500, neighbours=5"


def test_the_defaults_are_the_complexity_terms_two_settings() -> None:
    assert parse_setting(DEFAULT_A) == {"pixel_density": "full", "compressor": "png"}
    assert parse_setting(DEFAULT_B) == {"pixel_density": "diagonal", "compressor": "zlib"}


@pytest.mark.parametrize("pair", ["knn_imags=2500", "knn_images", "=3", "scorer=knn_rmd"])
def test_an_unknown_key_or_a_missing_value_is_named(pair: str) -> None:
    with pytest.raises(SystemExit, match=repr(pair).replace("[", r"\[")):
        parse_setting([pair])


def test_a_value_the_config_refuses_is_named_before_any_fit() -> None:
    args = argparse.Namespace(fit_images=300, scorer=None)
    with pytest.raises(SystemExit, match="knn_images=none"):
        setting_config(args, parse_setting(["knn_images=none"]))


def test_a_heldout_model_takes_train_yamls_classifier_with_its_overrides() -> None:
    params = {"classifier": {"epochs": 30, "label_smoothing": 0.1, "hidden": 256}}
    args = argparse.Namespace(heldout_epochs=18, heldout_classifier=["label_smoothing=0"])
    config = heldout_classifier_config(params, args)
    assert (config.epochs, config.label_smoothing, config.hidden) == (18, 0.0, 256)


@pytest.mark.parametrize(
    ("pair", "named"),
    [
        ("label_smoothin=0", "label_smoothin=0"),  # not a classifier: key
        ("label_smoothing", "label_smoothing"),  # no value
        ("label_smoothing=much", "label_smoothing"),  # a value the config refuses
    ],
)
def test_a_bad_heldout_override_is_named_before_training(pair: str, named: str) -> None:
    args = argparse.Namespace(heldout_epochs=18, heldout_classifier=[pair])
    with pytest.raises(SystemExit, match=named):
        heldout_classifier_config({"classifier": {}}, args)


def test_the_b_side_reads_its_own_models_where_named() -> None:
    args = argparse.Namespace(
        model_dir="m",
        gan_dir="g",
        heldout_dir="held",
        shirt_dir="shirt",
        b_model_dir="m2",
        b_heldout_dir="held2",
        b_shirt_dir=None,
    )
    assert b_side_models(args) == {
        "m": ("m2", "g"),  # the default profile's GAN: pretrained before the classifier
        "held/classifier": ("held2/classifier", "held2/gan"),
        "shirt/classifier": ("shirt/classifier", "shirt/gan"),  # not named: A's own
    }


def test_a_b_model_without_its_a_side_is_named() -> None:
    args = argparse.Namespace(
        model_dir="m",
        gan_dir="g",
        heldout_dir=None,
        shirt_dir="shirt",
        b_model_dir=None,
        b_heldout_dir="held2",
        b_shirt_dir=None,
    )
    with pytest.raises(SystemExit, match="--b-heldout-dir needs --heldout-dir"):
        b_side_models(args)
