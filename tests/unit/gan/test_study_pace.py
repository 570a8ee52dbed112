"""The label-efficiency study's pacing: one scale for every arm, from a measured speed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bench.label_efficiency_pace import Pace, rescaled
from models.gan.config import GanTrainConfig
from models.gan.triple_config import TripleConfig


def test_no_budget_means_the_configured_steps(tmp_path: Path) -> None:
    def never() -> float:
        raise AssertionError("nothing is measured without a budget")

    assert Pace(tmp_path).scale(never, 1.0, leads=True) == 1.0
    assert not (tmp_path / "scale.json").exists()


def test_a_scale_fixed_in_advance_is_used_by_every_job_without_measuring(tmp_path: Path) -> None:
    from bench.label_efficiency import fix_scale

    def never() -> float:
        raise AssertionError("a fixed scale is never measured")

    fix_scale(tmp_path, 0.75)
    assert Pace(tmp_path).scale(never, 1.0, leads=True) == 0.75  # no budget
    budgeted = Pace(tmp_path, deadline=time.time() + 60)
    assert budgeted.scale(never, 0.27, leads=False) == 0.75
    fix_scale(tmp_path, 0.75)  # resuming with the same scale is fine
    with pytest.raises(SystemExit, match="another scale"):
        fix_scale(tmp_path, 0.5)
    with pytest.raises(SystemExit, match=r"\(0, 1\]"):
        fix_scale(tmp_path / "x", 1.5)


def test_the_first_measurement_fixes_the_scale_for_everyone(tmp_path: Path) -> None:
    # 100 triple steps/s per process, 4 processes, 60 s left, a plan of 96,000 triple steps:
    # 4 * 100 * 60 / 96,000 = 0.25 of the plan fits; with the safety margin, 0.2
    pace = Pace(tmp_path, plan_cost=96_000, longest=4_000, parallel=4, deadline=time.time() + 60)
    scale = pace.scale(lambda: 100.0, 1.0, leads=True)
    assert scale == pytest.approx(0.2, rel=0.02)
    written = json.loads((tmp_path / "scale.json").read_text())
    assert written["rate_triple_steps_per_s"] == 100.0 and written["parallel"] == 4

    def never() -> float:
        raise AssertionError("a scale is already there")

    assert pace.scale(never, 0.3, leads=False) == pytest.approx(scale)
    assert pace.scale(never, 1.0, leads=True) == pytest.approx(scale)


def test_the_longest_job_must_fit_too(tmp_path: Path) -> None:
    pace = Pace(tmp_path, plan_cost=10_000, longest=9_000, parallel=12, deadline=time.time() + 30)
    # plenty of parallel capacity, but one job alone needs 9,000 / 100 = 90 s
    assert pace.scale(lambda: 100.0, 1.0, leads=True) == pytest.approx(0.8 * 30 / 90, rel=0.02)


def test_a_fast_machine_never_adds_steps(tmp_path: Path) -> None:
    pace = Pace(tmp_path, plan_cost=1_000, longest=500, parallel=2, deadline=time.time() + 600)
    assert pace.scale(lambda: 1_000.0, 1.0, leads=True) == 1.0


def test_rescaling_scales_steps_and_every_warm_up() -> None:
    config = GanTrainConfig(mode="triple", steps=4000, triple=TripleConfig(rp_start=1000))
    half = rescaled(config, 0.5)
    assert half.steps == 2000 and half.checkpoint_every == 2000
    assert half.triple.rp_start == 500 and half.triple.adversarial_start == 250
    assert half.triple.ema_warmup == 500 and half.triple.unlabelled_ramp == 500
    assert half.triple.rp_weight == config.triple.rp_weight  # weights are not steps
    assert rescaled(config, 1.0) is config
    assert rescaled(config, 0.001).steps == 81  # never below the measured steps


def test_a_job_waiting_for_one_finished_before_starts(tmp_path: Path) -> None:
    """A resumed study (``--only`` the triple seeds): the GAN they wait for finished earlier."""
    import sys

    from bench.label_efficiency import schedule

    jobs = [{"name": "triple-0.01-s0", "after": ["gan-pretrain"]}]
    # each "job" is a Python process that exits at once (the study's argv ends with --job NAME)
    argv = [sys.executable, "-c", "import sys; sys.exit(0)"]
    state = schedule(jobs, argv, tmp_path, 1, time.time() + 60, {"gan-pretrain": "done"})
    assert state == {"gan-pretrain": "done", "triple-0.01-s0": "done"}
    assert (tmp_path / "logs" / "triple-0.01-s0.log").exists()


def test_a_job_whose_prerequisite_failed_is_skipped(tmp_path: Path) -> None:
    from bench.label_efficiency import schedule

    jobs = [{"name": "gan-0.01-s0", "after": ["gan-pretrain"]}]
    state = schedule(jobs, ["false"], tmp_path, 1, time.time() + 60, {"gan-pretrain": "failed (1)"})
    assert state["gan-0.01-s0"] == "skipped (gan-pretrain failed (1))"
