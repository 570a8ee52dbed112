"""A committed one-seed study's rows written back as job files pool with a new seed's."""

from __future__ import annotations

import pytest

from bench.label_efficiency_report import aggregate, per_seed_rows
from bench.label_efficiency_restore import job_rows


def _committed(seeds: list[int]) -> dict:
    row = {
        "labels": 0.01,
        "arm": "triple",
        "seeds": seeds,
        "fine_mean": 0.87,
        "coarse_mean": 0.99,
        "group_mean": 0.93,
        "steps": 8000,
        "pretrain_steps": 6000,
        "seconds": 100.0,
        "truncated": False,
        "labelled": 540,
        "merged_fine_mean": 0.875,
        "merge_weights": [0.7],
        "val_curve": [[4000, 0.86], [8000, 0.87]],
    }
    return {"rows": [row], "test_images": 10000}


def test_a_restored_seed_pools_with_a_new_one() -> None:
    restored = job_rows(_committed([0]), "committed.json")
    assert list(restored) == ["triple-0.01-s0"]
    new = dict(restored["triple-0.01-s0"], seed=1, fine=0.85, merged_fine=0.855, merge_weight=0.1)
    table = aggregate(per_seed_rows({**restored, "triple-0.01-s1": new}), {}, ["triple"])
    assert table[0]["seeds"] == [0, 1]
    assert table[0]["fine_mean"] == pytest.approx(0.86)
    assert table[0]["merged_fine_mean"] == pytest.approx(0.865)
    assert table[0]["merge_weights"] == [0.7, 0.1]


def test_a_pooled_row_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"row triple at 0.01 pools seeds \[0, 1\]"):
        job_rows(_committed([0, 1]), "committed.json")
