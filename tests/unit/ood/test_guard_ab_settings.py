"""The guard A/B bench's settings: ``ood:`` keys over train.yaml's, checked before any fit."""

from __future__ import annotations

import argparse

import pytest

from bench.ood_detection import served_config
from bench.ood_guard_ab import (
    DEFAULT_A,
    DEFAULT_B,
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
