"""The Evidently (0.7 API) drift report on drift frames, and the drift gate's decision.

The ``report_drift`` and ``gate_drift`` steps and ``bench/drift_detection.py`` call it; Evidently
is imported inside :func:`run_drift_report` only, so the rest of the core never needs it.
Evidently picks each column's test by type and reference size unless the config names one
(with more than 1,000 reference rows: normed Wasserstein distance for numerical columns,
Jensen-Shannon distance for categorical ones, both with threshold 0.1).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from models.monitoring.features import OOD_COLUMN, DriftColumns


class DriftTestConfig(BaseModel):
    """Evidently's drift tests (``drift:`` in the monitor YAML); ``None`` = Evidently's default."""

    model_config = ConfigDict(extra="forbid")

    drift_share: float = Field(
        0.5, gt=0, le=1, description="dataset drift when at least this share of columns drift"
    )
    method: str | None = Field(None, description="Evidently stat test for every column")
    num_method: str | None = Field(None, description="stat test for numerical columns")
    cat_method: str | None = Field(None, description="stat test for categorical columns")
    threshold: float | None = Field(None, gt=0, description="drift threshold for every column")
    num_threshold: float | None = Field(None, gt=0)
    cat_threshold: float | None = Field(None, gt=0)
    per_column_method: dict[str, str] | None = None
    per_column_threshold: dict[str, float] | None = None


class DriftGateConfig(BaseModel):
    """When a batch counts as drifted, and what then (``gate:`` in the monitor YAML)."""

    model_config = ConfigDict(extra="forbid")

    trigger_columns: list[str] = Field(
        default_factory=lambda: ["pred_*", "ood_score"],
        description="glob patterns: drift in any matching column is drift on its own "
        "(default: prediction drift at any tree level, and drift of the OOD score, which "
        "catches small camera changes: noise sigma 10/255, brightness +15)",
    )
    on_drift: str = Field(
        "exit", pattern="^(exit|retrain)$", description="exit 3, or run the train pipeline"
    )
    retrain_config: str = Field(
        "pipelines/configs/train.yaml", description="train config used when on_drift: retrain"
    )
    max_ood_share: float | None = Field(
        0.1,
        gt=0,
        le=1,
        description="drift when more than this share of the batch is out of distribution "
        "(the guard flags ~5 % of in-distribution images by construction); None: off",
    )


@dataclass
class DriftResult:
    """An Evidently run: the per-column outcome, the dataset-level test, and the HTML."""

    columns: dict[str, dict[str, Any]]  # name -> {method, score, threshold, drifted, type}
    share: float
    share_test_failed: bool
    drift_share: float
    n_reference: int
    n_current: int
    html: str
    ood: dict[str, Any] | None = None  # threshold, share of batch and reference over it

    def summary(self) -> dict[str, Any]:
        """JSON-able facts (everything but the HTML)."""
        return {
            "columns": self.columns,
            "share": self.share,
            "share_test_failed": self.share_test_failed,
            "drift_share": self.drift_share,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "ood": self.ood,
        }


def run_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: DriftColumns,
    config: DriftTestConfig,
    html: bool = True,
    ood_threshold: float | None = None,
    max_ood_share: float | None = None,
) -> DriftResult:
    """Run Evidently's ``DataDriftPreset`` (with its tests) on the drift columns.

    Args:
        reference: reference frame (the training data's validation split).
        current: the batch's frame, same columns.
        columns: which columns are numerical and which categorical.
        config: stat tests, thresholds and the dataset-drift share.
        html: render the standalone HTML report (a few MB; the bench skips it when timing tests).
        ood_threshold: the guard's threshold; with an ``ood_score`` column the report also shows
            the share of images over it (tested against ``max_ood_share`` when given).
        max_ood_share: the gate's limit on that share.

    Raises:
        ValueError: a frame lacks one of the columns.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    for name, frame in (("reference", reference), ("current", current)):
        missing = [c for c in columns.all if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} frame lacks drift columns {missing}")
    definition = DataDefinition(
        numerical_columns=columns.numerical, categorical_columns=columns.categorical
    )
    preset = DataDriftPreset(
        columns=columns.all,
        drift_share=config.drift_share,
        method=config.method,
        num_method=config.num_method,
        cat_method=config.cat_method,
        threshold=config.threshold,
        num_threshold=config.num_threshold,
        cat_threshold=config.cat_threshold,
        per_column_method=config.per_column_method,
        per_column_threshold=config.per_column_threshold,
    )
    metrics: list[Any] = [preset]
    ood = None
    if ood_threshold is not None and OOD_COLUMN in columns.numerical:
        metrics.append(_ood_share_metric(ood_threshold, max_ood_share))
        ood = {
            "threshold": float(ood_threshold),
            "share": float((current[OOD_COLUMN] > ood_threshold).mean()),
            "reference_share": float((reference[OOD_COLUMN] > ood_threshold).mean()),
        }
    # a constant column (img_min is 0 in nearly every Fashion-MNIST image) makes the preset's
    # correlation tables divide by a zero std: numpy warns, the drift tests are unaffected
    with np.errstate(invalid="ignore", divide="ignore"):
        snapshot = Report(metrics, include_tests=True).run(
            current_data=Dataset.from_pandas(current[columns.all], data_definition=definition),
            reference_data=Dataset.from_pandas(reference[columns.all], data_definition=definition),
        )
        html_text = snapshot.get_html_str(as_iframe=False) if html else ""
    per_column, share, share_failed = _read_outcome(snapshot.dict(), columns)
    return DriftResult(
        columns=per_column,
        share=share,
        share_test_failed=share_failed,
        drift_share=config.drift_share,
        n_reference=len(reference),
        n_current=len(current),
        html=html_text,
        ood=ood,
    )


def _ood_share_metric(threshold: float, max_share: float | None) -> Any:
    """Evidently's count of ``ood_score`` values over the threshold (its share tested)."""
    from evidently.metrics import OutRangeValueCount
    from evidently.tests import lte

    share_tests = [lte(max_share)] if max_share is not None else None
    # out of [-1e30, threshold] = over the threshold
    return OutRangeValueCount(
        column=OOD_COLUMN, left=-1e30, right=float(threshold), share_tests=share_tests
    )


def _read_outcome(
    outcome: dict[str, Any], columns: DriftColumns
) -> tuple[dict[str, dict[str, Any]], float, bool]:
    """Per-column results, the drifted share and whether the share test failed, from a snapshot."""
    per_column: dict[str, dict[str, Any]] = {}
    share, share_failed = 0.0, False
    for metric in outcome["metrics"]:
        cfg = metric["config"]
        if cfg["type"].endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif cfg["type"].endswith(":ValueDrift"):
            column = cfg["column"]
            per_column[column] = {
                "type": "categorical" if column in columns.categorical else "numerical",
                "method": cfg.get("method"),
                "threshold": cfg.get("threshold"),
                "score": float(metric["value"]),
                "drifted": False,
            }
    for test in outcome["tests"]:
        params = test["metric_config"]["params"]
        failed = test["status"] == "FAIL"
        if params["type"].endswith(":DriftedColumnsCount"):
            share_failed = failed
        elif params["type"].endswith(":ValueDrift") and params["column"] in per_column:
            per_column[params["column"]]["drifted"] = failed
    return per_column, share, share_failed


def drift_decision(summary: dict[str, Any], gate: DriftGateConfig) -> dict[str, Any]:
    """The gate: Evidently's share test failed, a trigger column drifted, or too much OOD.

    Too much OOD: more than ``gate.max_ood_share`` of the batch over the guard's threshold.

    Returns:
        ``{"drifted", "share", "drift_share", "drifted_columns", "trigger_columns_drifted",
        "reasons", "on_drift"}``; ``reasons`` is empty when nothing drifted.
    """
    columns = summary["columns"]
    drifted = sorted(c for c, r in columns.items() if r["drifted"])
    triggered = [c for c in drifted if any(fnmatch.fnmatch(c, p) for p in gate.trigger_columns)]
    reasons = []
    if summary["share_test_failed"]:
        reasons.append(
            f"{len(drifted)} of {len(columns)} columns drifted (share {summary['share']:.2f} >= "
            f"{summary['drift_share']:.2f}): {', '.join(drifted)}"
        )
    for c in triggered:
        r = columns[c]
        reasons.append(
            f"{c} drifted: {r['method']} = {r['score']:.4g} (threshold {r['threshold']})"
        )
    ood = summary.get("ood")
    if ood is not None and gate.max_ood_share is not None and ood["share"] > gate.max_ood_share:
        reasons.append(
            f"{ood['share']:.1%} of the batch is out of distribution (score > "
            f"{ood['threshold']:.4g}; at most {gate.max_ood_share:.0%} allowed, reference "
            f"{ood['reference_share']:.1%})"
        )
    return {
        "drifted": bool(reasons),
        "share": summary["share"],
        "drift_share": summary["drift_share"],
        "drifted_columns": drifted,
        "trigger_columns_drifted": triggered,
        "reasons": reasons,
        "on_drift": gate.on_drift,
        "n_reference": summary["n_reference"],
        "n_current": summary["n_current"],
        "ood_share": ood["share"] if ood else None,
    }
