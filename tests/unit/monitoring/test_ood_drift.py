"""The OOD score in the drift monitor: a column, its share as a gate trigger, the pictures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.monitoring.compare import ood_pictures
from models.monitoring.drift import (
    DriftGateConfig,
    DriftTestConfig,
    drift_decision,
    run_drift_report,
)
from models.monitoring.features import (
    OOD_COLUMN,
    DriftColumns,
    DriftFeatureConfig,
    DriftFeatureExtractor,
)
from tests.toy_models import guarded_square_classifier, square_images

COLUMNS = DriftColumns(numerical=["x0", "x1", OOD_COLUMN], categorical=["pred_item"])


def frame(n: int, seed: int, ood_fraction: float) -> pd.DataFrame:
    """In-distribution rows score N(0, 1); an ``ood_fraction`` of rows score 10."""
    rng = np.random.default_rng(seed)
    score = rng.normal(0, 1, n)
    score[: int(n * ood_fraction)] = 10.0
    return pd.DataFrame(
        {
            "x0": rng.normal(0, 1, n),
            "x1": rng.normal(0, 1, n),
            OOD_COLUMN: score,
            "pred_item": rng.choice(list("abc"), n),
        }
    )


def test_the_ood_share_is_a_trigger_of_its_own() -> None:
    reference = frame(3000, 0, 0.0)
    threshold = float(np.quantile(reference[OOD_COLUMN], 0.95))
    gate = DriftGateConfig(max_ood_share=0.1, trigger_columns=[])

    def decide(current: pd.DataFrame) -> dict:
        result = run_drift_report(
            reference, current, COLUMNS, DriftTestConfig(), False, threshold, 0.1
        )
        return drift_decision(result.summary(), gate)

    clean = decide(frame(1000, 1, 0.0))
    assert not clean["drifted"] and clean["ood_share"] < 0.1
    digits = decide(frame(1000, 2, 0.2))  # a fifth of the batch is something else
    assert digits["drifted"] and digits["ood_share"] > 0.2
    assert any("of the batch is out of distribution" in r for r in digits["reasons"])
    off = drift_decision(
        run_drift_report(
            reference, frame(1000, 2, 0.2), COLUMNS, DriftTestConfig(), False, threshold
        ).summary(),
        DriftGateConfig(max_ood_share=None, trigger_columns=[]),
    )
    assert not any("out of distribution" in r for r in off["reasons"])


def test_the_report_shows_the_share_over_the_threshold() -> None:
    reference = frame(2000, 0, 0.0)
    result = run_drift_report(
        reference, frame(500, 3, 0.3), COLUMNS, DriftTestConfig(), True, 1.645, 0.1
    )
    assert result.ood is not None and abs(result.ood["share"] - 0.3) < 0.05
    assert (
        "OutRangeValueCount" in result.html
        or "Out of range" in result.html
        or "ood_score" in result.html
    )


def test_extractor_adds_the_guards_score_from_the_same_pass() -> None:
    classifier, guard, _ = guarded_square_classifier()
    extractor = DriftFeatureExtractor(classifier, DriftFeatureConfig(n_components=3, device="cpu"))
    reference = extractor.fit_reference(square_images(200, seed=2)[0])
    assert OOD_COLUMN in extractor.columns.numerical and OOD_COLUMN in reference
    noise = np.random.default_rng(0).integers(0, 256, (50, 28, 28, 1), dtype=np.uint8)
    batch = extractor.transform(noise)
    assert (batch[OOD_COLUMN] > extractor.ood_threshold).mean() > 0.9
    pictures = ood_pictures(reference, batch, noise, extractor.ood_threshold)
    assert all(p.startswith(b"\x89PNG") for p in pictures.values())
