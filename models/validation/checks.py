"""Dataset checks: the per-image summary table GX validates, and the checks GX does not express.

The Great Expectations suite itself is in :mod:`models.validation.expectations`; this module is
numpy and pandas only. Every check yields a :class:`CheckOutcome` with a severity, so that the
gate can stop on critical failures and only report warnings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from models.data.dataset import SPLITS, LabelledImages, SkippedFile, image_digests
from models.data.sharded import Dataset

Severity = Literal["critical", "warning"]


class ValidationConfig(BaseModel):
    """Bounds for the dataset checks (``validation:`` in the pipeline YAML)."""

    model_config = ConfigDict(extra="forbid")

    min_class_count: dict[str, int] = Field(
        default_factory=lambda: {"train": 1, "val": 1, "test": 1},
        description="fewest images of every leaf class per split",
    )
    max_class_imbalance: float = Field(
        20.0, gt=1, description="largest/smallest class count within a split"
    )
    expected_image_shape: tuple[int, int, int] | None = Field(
        None, description="(H, W, C) every image must have; default: the first image's"
    )
    pixel_mean_range: tuple[float, float] = Field(
        (1.0, 254.0), description="per-image mean intensity outside this is suspicious (warning)"
    )
    min_pixel_std: float = Field(1.0, ge=0, description="below this an image counts as blank")
    max_blank_fraction: float = Field(0.001, ge=0, le=1)
    max_duplicate_fraction: float = Field(
        0.01, ge=0, le=1, description="exact duplicates within a split (warning above this)"
    )
    max_leaked_images: int = Field(
        0, ge=0, description="images of val/test whose exact copy is in train (critical above)"
    )
    max_skipped_fraction: float = Field(
        0.05, ge=0, le=1, description="unreadable files over all files (critical above)"
    )
    examples: int = Field(5, ge=1, le=50, description="example rows quoted per failed check")


@dataclass
class CheckOutcome:
    """One check's result, as the gate, the logs and the report see it."""

    name: str
    success: bool
    severity: Severity
    summary: str
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


def summary_table(data: LabelledImages, digests: np.ndarray | None = None) -> pd.DataFrame:
    """One row per image: split, index, shape, dtype, pixel range, mean/std, label, digest."""
    n = len(data.images)
    split_of = np.empty(n, dtype=object)
    for split in SPLITS:
        split_of[data.splits[split]] = split
    flat = data.images.reshape(n, -1)
    h, w, c = data.image_shape
    leaves = np.asarray(data.hierarchy.leaves, dtype=object)
    labels_ok = (data.labels >= 0) & (data.labels < data.hierarchy.num_leaves)
    table = pd.DataFrame(
        {
            "split": split_of,
            "index": np.arange(n),
            "height": np.full(n, h),
            "width": np.full(n, w),
            "channels": np.full(n, c),
            "dtype": np.full(n, str(data.images.dtype), dtype=object),
            "pixel_min": flat.min(axis=1).astype(np.int64),
            "pixel_max": flat.max(axis=1).astype(np.int64),
            "pixel_mean": flat.mean(axis=1, dtype=np.float64),
            "pixel_std": flat.std(axis=1, dtype=np.float64),
            "label": data.labels,
            "label_name": np.where(
                labels_ok, leaves[np.clip(data.labels, 0, len(leaves) - 1)], None
            ),
            "digest": image_digests(data.images) if digests is None else digests,
        }
    )
    return table


def class_count_table(data: Dataset) -> pd.DataFrame:
    """Images per (split, leaf class), with the class's share of its split."""
    rows = []
    tree = data.hierarchy
    for split in SPLITS:
        counts = data.class_counts(split)
        for leaf, count in enumerate(counts):
            rows.append(
                {
                    "split": split,
                    "label": leaf,
                    "label_name": tree.leaves[leaf],
                    "count": int(count),
                    "share": float(count) / max(1, int(counts.sum())),
                }
            )
    return pd.DataFrame(rows)


def structural_checks(
    data: Dataset,
    summary: pd.DataFrame,
    config: ValidationConfig,
    skipped: list[SkippedFile] | None = None,
) -> list[CheckOutcome]:
    """Checks that GX does not express well: duplicates, leakage, tree coverage, skipped files.

    ``skipped`` are the files that could not be used (default: those ingestion skipped; a
    streamed dataset adds the images that failed to decode while it was read).
    """
    return [
        *_duplicate_checks(summary, config),
        *_leakage_checks(summary, config),
        *_coverage_checks(data, config),
        _skipped_files_check(len(summary), data.skipped if skipped is None else skipped, config),
    ]


def _duplicate_checks(summary: pd.DataFrame, config: ValidationConfig) -> list[CheckOutcome]:
    """Exact duplicates within each split; conflicting labels on identical images are critical."""
    k = config.examples
    split = summary["split"].to_numpy()
    out = []
    for name in SPLITS:
        rows = summary[split == name]
        dup_mask = rows.duplicated("digest", keep="first")
        frac = float(dup_mask.mean()) if len(rows) else 0.0
        out.append(
            CheckOutcome(
                name=f"duplicates_within_{name}",
                success=frac <= config.max_duplicate_fraction,
                severity="warning",
                summary=f"{int(dup_mask.sum())} exact duplicate images in {name} "
                f"({frac:.3%}; bound {config.max_duplicate_fraction:.3%})",
                examples=_rows(rows[dup_mask], k),
            )
        )
    labels_per_digest = summary.groupby("digest")["label"].nunique()
    conflicting = labels_per_digest[labels_per_digest > 1].index
    conflict_rows = summary[summary["digest"].isin(conflicting)].sort_values("digest")
    out.append(
        CheckOutcome(
            name="identical_images_same_label",
            success=len(conflicting) == 0,
            severity="critical",
            summary=f"{len(conflicting)} distinct image(s) appear with different labels",
            examples=_rows(conflict_rows, k),
        )
    )
    return out


def _leakage_checks(summary: pd.DataFrame, config: ValidationConfig) -> list[CheckOutcome]:
    """An exact copy of a val/test image in train makes evaluation optimistic."""
    split = summary["split"].to_numpy()
    train_digests = set(summary["digest"].to_numpy()[split == "train"])
    out = []
    for name in ("val", "test"):
        rows = summary[(split == name) & summary["digest"].isin(train_digests)]
        out.append(
            CheckOutcome(
                name=f"leakage_train_{name}",
                success=len(rows) <= config.max_leaked_images,
                severity="critical",
                summary=f"{len(rows)} {name} images also in train (bound "
                f"{config.max_leaked_images})",
                examples=_rows(rows, config.examples),
            )
        )
    return out


def _coverage_checks(data: Dataset, config: ValidationConfig) -> list[CheckOutcome]:
    """Tree consistency: every node of every level has training images."""
    tree = data.hierarchy
    train_counts = data.class_counts("train")
    out = []
    for level, level_name in enumerate(tree.level_names):
        present = np.bincount(
            tree.leaf_paths[:, level], weights=train_counts, minlength=tree.level_sizes[level]
        )
        missing = [tree.level_nodes[level][i] for i in np.flatnonzero(present == 0)]
        out.append(
            CheckOutcome(
                name=f"tree_coverage_{level_name}",
                success=not missing,
                severity="critical",
                summary=f"level {level_name!r}: {len(missing)} of {tree.level_sizes[level]} nodes "
                f"have no training images" + (f": {missing[: config.examples]}" if missing else ""),
            )
        )
    return out


def _skipped_files_check(
    n_images: int, skipped: list[SkippedFile], config: ValidationConfig
) -> CheckOutcome:
    """Files that could not be read: listed, and a gate on how many."""
    n_files = n_images + len(skipped)
    frac = len(skipped) / max(1, n_files)
    return CheckOutcome(
        name="skipped_files",
        success=frac <= config.max_skipped_fraction,
        severity="critical",
        summary=f"{len(skipped)} of {n_files} files skipped ({frac:.2%}; "
        f"bound {config.max_skipped_fraction:.2%})",
        # every file by name (up to 1000), for the step's metadata
        examples=[{"path": s.path, "reason": s.reason} for s in skipped[:1000]],
    )


def _rows(frame: pd.DataFrame, k: int) -> list[dict[str, Any]]:
    cols = [c for c in ("split", "index", "label", "label_name", "digest") if c in frame]
    return [
        {c: to_native(v) for c, v in row.items()} for row in frame[cols].head(k).to_dict("records")
    ]


def to_native(value: Any) -> Any:
    """Numpy scalars (also inside dicts and lists) as plain Python values, for JSON and GX."""
    if isinstance(value, dict):
        return {k: to_native(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_native(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def format_failures(outcomes: list[CheckOutcome], severity: Severity = "critical") -> str:
    """A readable multi-line account of the failed checks of one severity, with example rows."""
    failed = [o for o in outcomes if not o.success and o.severity == severity]
    lines = [f"{len(failed)} {severity} data check(s) failed:"]
    for o in failed:
        lines.append(f"  - {o.name}: {o.summary}")
        for ex in o.examples[:10]:
            lines.append("      e.g. " + ", ".join(f"{k}={v}" for k, v in ex.items()))
        if len(o.examples) > 10:
            lines.append(f"      ... and {len(o.examples) - 10} more")
    return "\n".join(lines)
