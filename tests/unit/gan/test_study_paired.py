"""The study's arms compared seed by seed: the triple arm's differences within each seed."""

from __future__ import annotations

from typing import Any

import pytest

from bench.label_efficiency_paired import markdown, paired_gains
from bench.label_efficiency_report import aggregate, per_seed_rows


def _job(arm: str, seed: int, fine: float, merged: float | None = None) -> dict[str, Any]:
    row = {"labels": 0.01, "arm": arm, "seed": seed, "fine": fine, "coarse": 0.99}
    row |= {"steps": 8000, "seconds": 10.0, "merged_fine": merged}
    return row | ({"merge_weight": 0.5} if merged is not None else {})


def _table(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results = {f"{j['arm']}-0.01-s{j['seed']}": j for j in jobs}
    return aggregate(per_seed_rows(results), {}, ["scratch", "scratch-ssl", "triple"])


def test_differences_are_taken_within_each_seed() -> None:
    # seed 1's labelled subset is the harder one for both arms: the arms' std is large, the
    # triple arm's lead the same in both seeds
    table = _table(
        [
            _job("scratch-ssl", 0, 0.86),
            _job("scratch-ssl", 1, 0.80),
            _job("triple", 0, 0.87, merged=0.875),
            _job("triple", 1, 0.81, merged=0.80),
        ]
    )
    gains = {(g["arm"], g["against"]): g for g in paired_gains(table)}
    plain = gains[("triple", "scratch-ssl")]
    assert plain["seeds"] == [0, 1]
    assert plain["points_per_seed"] == [1.0, 1.0]
    assert plain["mean_points"] == pytest.approx(1.0)
    assert plain["std_points"] == pytest.approx(0.0)
    assert plain["ahead"] == 2
    merged = gains[("triple, D merged", "scratch-ssl")]
    assert merged["points_per_seed"] == [1.5, 0.0] and merged["ahead"] == 1


def test_only_the_seeds_both_arms_ran_are_paired_and_one_seed_is_no_pair() -> None:
    table = _table(
        [
            _job("scratch", 0, 0.82),
            _job("scratch-ssl", 0, 0.86),
            _job("scratch-ssl", 2, 0.85),
            _job("triple", 0, 0.87),
            _job("triple", 1, 0.86),
            _job("triple", 2, 0.88),
        ]
    )
    gains = paired_gains(table)
    assert [(g["against"], g["seeds"]) for g in gains] == [("scratch-ssl", [0, 2])]
    assert gains[0]["points_per_seed"] == [1.0, 3.0]
    lines = "\n".join(markdown(table, gains))
    assert "| 1% | triple | scratch-ssl | +1.00, +3.00 | +2.00 ± 1.41 | 2 of 2 |" in lines
    assert "| 1% | scratch | 82.00 | — | — |" in lines  # seeds an arm did not run are dashes


def test_one_seed_writes_no_section() -> None:
    table = _table([_job("scratch", 0, 0.82), _job("triple", 0, 0.87)])
    assert paired_gains(table) == []
    assert markdown(table, []) == []
