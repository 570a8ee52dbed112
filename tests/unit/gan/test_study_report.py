"""The label-efficiency study's report: its pictures (G's samples, val curves) and tables."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.label_efficiency_report import (
    SAMPLES_PER_LEAF,
    aggregate,
    curve_gains,
    curves_picture,
    markdown,
    per_seed_rows,
    samples_picture,
    write_pictures,
)
from models.tree.hierarchy import load_builtin_tree

TREE = load_builtin_tree("fashion-mnist")


def _samples(runs: Path, job: str, value: int = 0, per_leaf: int = SAMPLES_PER_LEAF) -> None:
    leaves = np.repeat(np.arange(TREE.num_leaves), per_leaf)
    images = np.full((len(leaves), 28, 28, 1), value, np.uint8)
    np.savez(runs / f"{job}.samples.npz", images=images, leaves=leaves)


def _head(settings: dict | None = None) -> dict:
    """A results page's header with nothing in it but ``settings``."""
    head = {"label": "", "machine": "m", "command": "c", "seconds": 1.0, "test_images": 10}
    return head | {"targets": {}, "paired": [], "jobs": {}, "settings": settings or {}}


def test_the_picture_shows_the_plain_triple_arm_at_the_fewest_labels_and_first_seed(
    tmp_path: Path,
) -> None:
    for job in ("triple-flat-0.01-s0", "triple-0.1-s0", "triple-0.01-s2"):
        _samples(tmp_path, job, value=0)
    _samples(tmp_path, "triple-0.01-s1", value=255)  # the one to show: white where others are black
    (tmp_path / "triple-0.01-s1.json").write_text("{}")  # results beside the samples are ignored
    picture = samples_picture(tmp_path, TREE)
    assert picture is not None
    job, png = picture
    assert job == "triple-0.01-s1"
    (tmp_path / "triple-0.01-s1.samples.npz").unlink()
    (tmp_path / "triple-0.01-s2.samples.npz").unlink()
    other = samples_picture(tmp_path, TREE)
    assert other is not None and other[0] == "triple-flat-0.01-s0"
    shown, black = (
        np.asarray(Image.open(io.BytesIO(b)).convert("L"), float) for b in (png, other[1])
    )
    assert shown.shape == black.shape and shown.mean() > black.mean() + 20  # its images are drawn


def test_without_a_triple_arm_there_is_no_picture_and_the_page_says_nothing_of_one(
    tmp_path: Path,
) -> None:
    _samples(tmp_path, "scratch-0.01-s0")  # no other arm leaves samples; even so, not G's
    _samples(tmp_path, "triple-notes")  # nor a file named otherwise
    assert samples_picture(tmp_path, TREE) is None
    assert "samples" not in markdown([], _head(), None)
    shown = markdown([], _head(), None, ("triple-0.01-s0", "label_efficiency_samples.png"))
    assert "![samples](label_efficiency_samples.png)" in shown and "triple-0.01-s0" in shown


def _row(arm: str, labels: float, seed: int, fine: float, curve: list | None) -> dict:
    row = {"arm": arm, "labels": labels, "seed": seed, "fine": fine, "coarse": 0.99}
    row |= {"steps": 40, "seconds": 1.0}
    return row | ({"val_curve": curve} if curve is not None else {})


def test_the_seeds_val_curves_are_averaged_and_the_second_half_gain_is_reported() -> None:
    rows = [
        _row("scratch", 0.01, 0, 0.80, [[10, 0.70], [20, 0.76], [30, 0.78], [40, 0.79]]),
        _row("scratch", 0.01, 1, 0.82, [[10, 0.72], [20, 0.78], [30, 0.80], [40, 0.83]]),
        _row("scratch-ssl", 0.01, 0, 0.84, [[10, 0.70], [20, 0.80], [30, 0.84], [40, 0.86]]),
        _row("scratch-ssl", 0.01, 1, 0.85, None),  # a seed without a curve: no mean curve
        _row("gan", 0.01, 0, 0.83, [[10, 0.70], [20, 0.80]]),
        _row("gan", 0.01, 1, 0.83, [[10, 0.70], [30, 0.80]]),  # other steps: no mean curve
        _row("scratch", 0.1, 0, 0.88, [[10, 0.80], [20, 0.88]]),
    ]
    table = aggregate(rows, {}, ["scratch", "scratch-ssl", "gan"])
    by = {(r["labels"], r["arm"]): r for r in table}
    assert by[0.01, "scratch"]["val_curve"] == [[10, 0.71], [20, 0.77], [30, 0.79], [40, 0.81]]
    assert "val_curve" not in by[0.01, "scratch-ssl"] and "val_curve" not in by[0.01, "gan"]
    gains = curve_gains(table)
    assert [(g["labels"], g["arm"]) for g in gains] == [(0.01, "scratch"), (0.1, "scratch")]
    assert gains[0]["half_step"] == 20 and gains[0]["gain_points"] == 4.0  # 77 -> 81 %
    page = markdown(table, _head({"study": {"curve_images": 100}}), None, None, "x_curves.png")
    assert "| 1% | scratch | 77.00 (20) | 81.00 | +4.00 |" in page
    assert "![curves](x_curves.png)" in page


def test_the_curves_picture_draws_the_fewest_labels_and_is_absent_without_curves() -> None:
    rows = [_row("scratch", 0.01, 0, 0.8, [[10, 0.7], [20, 0.8]])]
    png = curves_picture(aggregate(rows, {}, ["scratch"]))
    assert png is not None and Image.open(io.BytesIO(png)).size[0] > 100
    assert curves_picture(aggregate([_row("scratch", 0.01, 0, 0.8, None)], {}, ["scratch"])) is None
    assert curves_picture([]) is None


def test_without_matplotlib_the_pictures_are_left_out_and_nothing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = aggregate([_row("scratch", 0.01, 0, 0.8, [[10, 0.7], [20, 0.8]])], {}, ["scratch"])
    assert write_pictures(table, tmp_path, None, tmp_path, "x") == (None, "x_curves.png")
    (tmp_path / "x_curves.png").unlink()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as on a machine with torch alone
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    assert write_pictures(table, tmp_path, None, tmp_path, "x") == (None, None)
    assert not list(tmp_path.glob("*.png"))


def test_the_semi_supervised_heads_row_does_not_inherit_the_fine_tuned_c_curve() -> None:
    semi = _row("gan-semi", 0.01, 0, 0.82, [[10, 0.7], [20, 0.8]])
    semi["head"] = {"fine": 0.78, "coarse": 0.97, "steps": 50}
    table = aggregate(per_seed_rows({"gan-semi-0.01-s0": semi}), {}, ["gan-semi", "gan-semi-head"])
    assert [(r["arm"], "val_curve" in r) for r in table] == [
        ("gan-semi", True),
        ("gan-semi-head", False),
    ]


def _columns(line: str) -> int:
    return line.strip().strip("|").count("|") + 1


@pytest.mark.parametrize("judged", [True, False])
def test_the_fidelity_table_has_as_many_header_cells_as_each_row(judged: bool) -> None:
    fidelity = {"diversity": 1.07}
    if judged:
        fidelity |= {"fidelity_category": 0.99, "fidelity_item": 0.95, "fidelity_fine": 0.95}
    table = aggregate(
        [_row("triple", 0.01, 0, 0.86, None)], {"triple-0.01-s0": fidelity}, ["triple"]
    )
    page = markdown(table, _head(), {"fine": 0.89})
    lines = page.splitlines()
    start = [i for i, line in enumerate(lines) if line.startswith("| labels | arm |")][-1]
    header, rule, body = lines[start : start + 3]  # the fidelity table, after the main one
    assert _columns(header) == _columns(rule) == _columns(body) == (5 if judged else 3)
    assert ("| 1% | triple | 99.0 | 95.0 | 1.07 |" if judged else "| 1% | triple | 1.07 |") == body
    assert ("not judged" in page) is not judged
