"""Every shipped run config validates against its pipeline's parameters (extra keys rejected)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from bench.label_efficiency_arms import StudyParams
from pipelines.run_config import load_run_config

CONFIGS = sorted(Path("pipelines/configs").glob("*.yaml"))


def params_model(name: str) -> type[BaseModel]:
    """The parameters model a config file belongs to, by its name."""
    if name.startswith("train"):
        from pipelines.train_pipeline import TrainParams

        return TrainParams
    if name.startswith("promote"):
        from pipelines.promote_pipeline import PromoteParams

        return PromoteParams
    if name.startswith("monitor"):
        from pipelines.monitor_pipeline import MonitorParams

        return MonitorParams
    return StudyParams  # label_efficiency*.yaml: the benchmark's study


def test_every_config_is_covered() -> None:
    assert len(CONFIGS) >= 15
    assert {p.name for p in CONFIGS} >= {"train.yaml", "train_adversarial_gpu.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates(path: Path) -> None:
    params, _ = load_run_config(path, params_model(path.name))
    assert isinstance(params, BaseModel)


def test_adversarial_profiles_train_from_the_start_with_the_torch_loop() -> None:
    from pipelines.train_pipeline import TrainParams

    for name in ("train_adversarial.yaml", "train_adversarial_gpu.yaml"):
        params, _ = load_run_config(Path("pipelines/configs") / name, TrainParams)
        adv = params.classifier.adversarial
        assert adv is not None and adv.from_start and adv.backend == "torch"
        assert params.robustness.autoattack_eps == [0.1]


def _triple_params(**changes: object) -> dict:
    import yaml

    raw = yaml.safe_load(Path("pipelines/configs/train_triple.yaml").read_text())["parameters"]
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = raw
        for name in parents:
            node = node[name]
        if value is None:
            node.pop(key, None)
        else:
            node[key] = value
    return raw


def test_triple_profiles_start_c_from_their_pretrained_trunk_gan() -> None:
    from pipelines.train_pipeline import TrainParams

    for name in ("train_triple.yaml", "train_triple_scarce.yaml", "train_triple_smoke.yaml"):
        params, _ = load_run_config(Path("pipelines/configs") / name, TrainParams)
        assert params.gan.mode == "triple" and params.classifier.init == "gan"
        assert params.trunk_gan is not None and params.trunk_gan.mode == "unsupervised"
        assert params.trunk_gan.architecture.d_width == params.gan.architecture.d_width


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"trunk_gan": None}, "add a trunk_gan section"),
        ({"classifier__init": "scratch"}, "only read with gan.mode=triple"),
        ({"trunk_gan__mode": "triple"}, "cannot itself be a triple game"),
        ({"trunk_gan__architecture__d_width": 32}, "trunk_gan.architecture.d_width: 32"),
        ({"trunk_gan__architecture__spectral_norm": True}, "trunk_gan.architecture.spectral_norm"),
    ],
)
def test_a_trunk_gan_that_cannot_start_c_fails_naming_the_key(changes: dict, named: str) -> None:
    from pydantic import ValidationError

    from pipelines.train_pipeline import TrainParams

    with pytest.raises(ValidationError, match=named.replace(".", r"\.")):
        TrainParams(**_triple_params(**changes))


def test_scratch_c_in_triple_mode_needs_no_trunk_gan() -> None:
    from pipelines.train_pipeline import TrainParams

    params = TrainParams(**_triple_params(trunk_gan=None, classifier__init="scratch"))
    assert params.trunk_gan is None
