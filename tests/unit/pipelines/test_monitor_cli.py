"""The monitor CLI's exit codes and its retraining command."""

from __future__ import annotations

import pytest

from models.monitoring.drift import (
    DriftGateConfig,
)


def test_exit_codes_and_retraining() -> None:
    from pipelines.monitor_pipeline import EXIT_DRIFT, EXIT_OK, act_on_decision

    calls: list[list[str]] = []

    def fake_run(command: list[str]) -> int:
        calls.append(command)
        return 0

    gate = DriftGateConfig()
    assert act_on_decision({"drifted": False}, gate, fake_run) == EXIT_OK
    assert act_on_decision({"drifted": True}, gate, fake_run) == EXIT_DRIFT
    assert calls == []
    retrain = DriftGateConfig(on_drift="retrain", retrain_config="pipelines/configs/x.yaml")
    assert act_on_decision({"drifted": False}, retrain, fake_run) == EXIT_OK
    assert calls == []
    assert act_on_decision({"drifted": True}, retrain, lambda c: calls.append(c) or 7) == 7
    assert calls[0][1:] == [
        "-m",
        "pipelines.train_pipeline",
        "--config",
        "pipelines/configs/x.yaml",
    ]
    with pytest.raises(ValueError):
        DriftGateConfig(on_drift="page-someone")
