"""The Great Expectations suite over the per-image summary and the per-class counts.

GX 0.18 (ZenML's integration requires < 1.0) runs in an ephemeral context: nothing is written to
disk, and the data docs page of each validation is rendered to HTML for the report. The checks
that GX does not express well live in :mod:`models.validation.checks`.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any

import numpy as np
import pandas as pd

from models.data.dataset import SPLITS
from models.tree.hierarchy import Hierarchy
from models.validation.checks import CheckOutcome, ValidationConfig, to_native

logger = logging.getLogger(__name__)


def _image_expectations(
    tree: Hierarchy, config: ValidationConfig, summary: pd.DataFrame
) -> list[tuple[str, dict[str, Any], str]]:
    """``(expectation type, kwargs, severity)`` for the per-image summary table."""
    if config.expected_image_shape is not None:
        h, w, c = config.expected_image_shape
    else:  # no declared shape: every image must have the first image's shape
        h, w, c = (int(summary[col].iloc[0]) for col in ("height", "width", "channels"))
    lo, hi = config.pixel_mean_range
    return [
        ("expect_column_values_to_be_in_set", {"column": "height", "value_set": [h]}, "critical"),
        ("expect_column_values_to_be_in_set", {"column": "width", "value_set": [w]}, "critical"),
        ("expect_column_values_to_be_in_set", {"column": "channels", "value_set": [c]}, "critical"),
        (
            "expect_column_values_to_be_in_set",
            {"column": "dtype", "value_set": ["uint8"]},
            "critical",
        ),
        (
            "expect_column_values_to_be_between",
            {"column": "pixel_min", "min_value": 0, "max_value": 255},
            "critical",
        ),
        (
            "expect_column_values_to_be_between",
            {"column": "pixel_max", "min_value": 0, "max_value": 255},
            "critical",
        ),
        (
            "expect_column_values_to_be_between",
            {
                "column": "pixel_std",
                "min_value": config.min_pixel_std,
                "mostly": 1.0 - config.max_blank_fraction,
            },
            "critical",
        ),
        (
            "expect_column_values_to_be_between",
            {"column": "pixel_mean", "min_value": lo, "max_value": hi},
            "warning",
        ),
        (
            "expect_column_values_to_be_in_set",
            {"column": "label", "value_set": list(range(tree.num_leaves))},
            "critical",
        ),
        ("expect_column_values_to_not_be_null", {"column": "label_name"}, "critical"),
        (
            "expect_column_values_to_be_in_set",
            {"column": "split", "value_set": list(SPLITS)},
            "critical",
        ),
        ("expect_column_values_to_not_be_null", {"column": "digest"}, "critical"),
    ]


def _count_expectations(config: ValidationConfig) -> list[tuple[str, dict[str, Any], str]]:
    """``(expectation type, kwargs, severity)`` for the per-(split, class) count table."""
    out: list[tuple[str, dict[str, Any], str]] = []
    for split in SPLITS:
        out.append(
            (
                "expect_column_values_to_be_between",
                {
                    "column": "count",
                    "min_value": config.min_class_count.get(split, 1),
                    "row_condition": f'split=="{split}"',
                    "condition_parser": "pandas",
                },
                "critical",
            )
        )
    out.append(
        (
            "expect_column_values_to_be_between",
            {"column": "imbalance", "min_value": 1, "max_value": config.max_class_imbalance},
            "warning",
        )
    )
    return out


def run_expectations(
    summary: pd.DataFrame, counts: pd.DataFrame, tree: Hierarchy, config: ValidationConfig
) -> tuple[list[CheckOutcome], str]:
    """Validate both tables; return one outcome per expectation and the data docs HTML.

    Args:
        summary: :func:`models.validation.checks.summary_table`.
        counts: :func:`models.validation.checks.class_count_table`.
        tree: the dataset's label tree.
        config: the bounds.

    Returns:
        ``(outcomes, html)``: outcomes carry example rows of each failed expectation.
    """
    import great_expectations as gx
    from great_expectations.core import ExpectationConfiguration
    from great_expectations.data_context.types.base import ProgressBarsConfig

    counts = counts.copy()
    largest = counts.groupby("split")["count"].transform("max")
    counts["imbalance"] = largest / counts["count"].clip(lower=1)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(
        globally=False, profilers=False, metric_calculations=False
    )
    datasource = context.sources.add_pandas("hiergan")
    plans = [
        ("image_summary", summary, _image_expectations(tree, config, summary), ["index"]),
        ("class_counts", counts, _count_expectations(config), ["split", "label"]),
    ]
    outcomes: list[CheckOutcome] = []
    pages: list[str] = []
    for name, frame, expectations, id_columns in plans:
        asset = datasource.add_dataframe_asset(name)
        suite = context.add_or_update_expectation_suite(f"hiergan_{name}")
        for kind, kwargs, severity in expectations:
            suite.add_expectation(
                ExpectationConfiguration(
                    expectation_type=kind, kwargs=kwargs, meta={"severity": severity}
                )
            )
        validator = context.get_validator(
            batch_request=asset.build_batch_request(dataframe=frame), expectation_suite=suite
        )
        with warnings.catch_warnings():
            # "result_format configured at the Validator-level will not be persisted": we use a
            # validator, not a checkpoint, on purpose (ephemeral context, nothing to persist).
            warnings.simplefilter("ignore", UserWarning)
            result = validator.validate(
                result_format={
                    "result_format": "COMPLETE",
                    "unexpected_index_column_names": id_columns,
                    "partial_unexpected_count": config.examples,
                }
            )
        _make_native(result)
        outcomes.extend(
            _outcome(name, r, frame, id_columns, config.examples) for r in result.results
        )
        pages.append(_render(result))
    return outcomes, _join_pages(pages)


def _outcome(
    table: str, r: Any, frame: pd.DataFrame, id_columns: list[str], k: int
) -> CheckOutcome:
    cfg = r.expectation_config
    kwargs = {
        key: v for key, v in cfg.kwargs.items() if key not in ("batch_id", "condition_parser")
    }
    res = r.result or {}
    examples: list[dict[str, Any]] = []
    index_list = res.get("unexpected_index_list") or res.get("partial_unexpected_index_list") or []
    for ident in index_list[:k]:
        mask = np.ones(len(frame), dtype=bool)
        for col in id_columns:
            mask &= frame[col].to_numpy() == ident[col]
        if mask.any():
            row = frame[mask].iloc[0]
            keep = [c for c in frame.columns if c != "digest"]
            examples.append({c: to_native(row[c]) for c in keep})
    if r.exception_info and r.exception_info.get("raised_exception"):
        summary = f"{table}: could not run: {r.exception_info.get('exception_message')}"
    elif "unexpected_count" in res:
        summary = (
            f"{table}: {res['unexpected_count']} of {res.get('element_count')} rows unexpected "
            f"({kwargs})"
        )
    else:
        summary = f"{table}: observed {res.get('observed_value')} ({kwargs})"
    return CheckOutcome(
        name=f"{cfg.expectation_type}[{kwargs.get('column')}]"
        + (f"[{kwargs['row_condition']}]" if "row_condition" in kwargs else ""),
        success=bool(r.success),
        severity=cfg.meta.get("severity", "critical"),
        summary=summary,
        examples=examples,
    )


def _make_native(result: Any) -> None:
    # GX 0.18's renderer rejects numpy 2 scalars (num_to_str parses their repr "np.int64(1)"),
    # so results are converted to plain Python numbers before rendering.
    for r in result.results:
        r.result = to_native(r.result)
    result.statistics = to_native(result.statistics)


def _render(result: Any) -> str:
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    return DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))


def _join_pages(pages: list[str]) -> str:
    """Put the body of every page after the first page's body: one HTML document."""
    if not pages:
        return "<html><body>no validation ran</body></html>"
    first, rest = pages[0], pages[1:]
    bodies = []
    for page in rest:
        match = re.search(r"<body[^>]*>(.*)</body>", page, flags=re.S)
        bodies.append(match.group(1) if match else page)
    cut = first.rfind("</body>")
    if cut < 0:
        return first + "".join(bodies)
    return first[:cut] + "<hr/>" + "<hr/>".join(bodies) + first[cut:]
