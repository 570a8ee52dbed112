"""The Evidently drift report on synthetic frames, the gate's decision and the exit codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.monitoring.drift import (
    DriftGateConfig,
    DriftTestConfig,
    drift_decision,
    run_drift_report,
)
from models.monitoring.features import DriftColumns
from models.monitoring.reference import ReferenceMismatchError, check_reference

COLUMNS = DriftColumns(numerical=[f"x{i}" for i in range(6)], categorical=["pred_item"])


def frame(n: int, seed: int, shift: float = 0.0, drop_class: str | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {f"x{i}": rng.normal(shift, 1.0, n) for i in range(6)}
    classes = [c for c in "abcdefghij" if c != drop_class]
    data["pred_item"] = rng.choice(classes, n)
    return pd.DataFrame(data)


REFERENCE = frame(3000, seed=0)


def decide(current: pd.DataFrame, test: DriftTestConfig | None = None, **gate) -> dict:
    result = run_drift_report(REFERENCE, current, COLUMNS, test or DriftTestConfig(), html=False)
    return drift_decision(result.summary(), DriftGateConfig(**gate))


def test_same_distribution_does_not_drift() -> None:
    decision = decide(frame(800, seed=1))
    assert decision["drifted"] is False
    assert decision["reasons"] == [] and decision["drifted_columns"] == []
    assert decision["n_reference"] == 3000 and decision["n_current"] == 800


def test_shift_in_most_columns_drifts_by_share() -> None:
    decision = decide(frame(800, seed=1, shift=0.5))
    assert decision["drifted"] is True
    assert decision["drifted_columns"] == [f"x{i}" for i in range(6)]
    assert decision["share"] == pytest.approx(6 / 7)
    assert decision["reasons"][0].startswith("6 of 7 columns drifted (share 0.86 >= 0.50)")


def test_prediction_drift_alone_triggers_through_the_trigger_columns() -> None:
    current = frame(800, seed=1, drop_class="c")  # one class missing; features unchanged
    decision = decide(current)
    assert decision["drifted"] is True
    assert decision["drifted_columns"] == ["pred_item"]
    assert decision["trigger_columns_drifted"] == ["pred_item"]
    assert decision["reasons"] == [
        r for r in decision["reasons"] if r.startswith("pred_item drifted: Jensen-Shannon")
    ]
    # without trigger columns the share (1 of 7) is below 0.5: no drift
    assert decide(current, trigger_columns=[])["drifted"] is False


def test_thresholds_and_share_are_configurable() -> None:
    current = frame(800, seed=1, shift=0.5)
    loose = DriftTestConfig(num_threshold=5.0)  # normed Wasserstein of 0.5 sigma is ~0.5
    assert decide(current, loose)["drifted"] is False
    strict = DriftTestConfig(per_column_threshold={"x0": 1e-6}, drift_share=0.1)
    decision = decide(frame(800, seed=1), strict, trigger_columns=[])
    assert decision["drifted_columns"] == ["x0"] and decision["drifted"] is True
    ks = DriftTestConfig(num_method="ks")  # a p-value test: drift when p < threshold
    result = run_drift_report(REFERENCE, current, COLUMNS, ks, html=False)
    assert result.columns["x0"]["method"] == "ks"
    assert result.columns["x0"]["drifted"] and result.columns["x0"]["score"] < 0.05


def test_report_renders_html_and_refuses_missing_columns() -> None:
    result = run_drift_report(REFERENCE, frame(300, seed=2), COLUMNS, DriftTestConfig())
    assert result.html.lstrip().lower().startswith("<html") or "<html" in result.html[:2000]
    with pytest.raises(ValueError, match=r"current frame lacks drift columns \['x5'\]"):
        run_drift_report(REFERENCE, frame(10, 0).drop(columns="x5"), COLUMNS, DriftTestConfig())


def test_reference_check() -> None:
    assert check_reference("abc", "abc", allow_mismatch=False) is None
    with pytest.raises(ReferenceMismatchError, match="not the data the model was trained on"):
        check_reference("abc", "def", allow_mismatch=False)
    assert "allowed" in check_reference("abc", "def", allow_mismatch=True)
    assert "no dataset hash" in check_reference("", "def", allow_mismatch=False)
