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
