"""The label-efficiency study's plan: which jobs run, what each waits for, what each arm plays."""

from __future__ import annotations

import numpy as np

from bench.label_efficiency import inline_order, job_cost, load_params, plan
from bench.label_efficiency_arms import (
    ARMS,
    StudyConfig,
    StudyParams,
    arm_game,
    pretraining_leads,
)


def _params(**study: object) -> StudyParams:
    return StudyParams(study=StudyConfig(seeds={0.01: [0, 1]}, **study))


def test_every_arm_that_starts_from_the_gan_waits_for_its_pretraining() -> None:
    jobs = {j["name"]: j["after"] for j in plan(_params(triple_trunk="gan"))}
    assert jobs["gan-pretrain"] == [] and jobs["reference"] == []
    for arm in ("gan", "gan-ssl", "triple", "triple-no-rp", "triple-flat"):
        assert jobs[f"{arm}-0.01-s1"] == ["gan-pretrain"], arm
    for arm in ("scratch", "scratch-ssl", "gan-semi"):
        assert jobs[f"{arm}-0.01-s0"] == [], arm
    assert len(jobs) == 2 + 2 * (len(ARMS) - 1)  # gan-semi-head comes out of the gan-semi jobs


def test_one_process_runs_the_pace_setter_first_and_every_job_after_what_it_waits_for() -> None:
    jobs = plan(_params(triple_trunk="gan"))
    order = [j["name"] for j in inline_order(jobs)]
    assert sorted(order) == sorted(j["name"] for j in jobs)  # each job once
    assert order[:2] == ["gan-pretrain", "triple-0.01-s0"]  # the triple job waits for its trunk
    for job in jobs:
        for prerequisite in job["after"]:
            assert order.index(prerequisite) < order.index(job["name"]), job["name"]
    scratch_trunk = [j["name"] for j in inline_order(plan(_params(triple_trunk="scratch")))]
    assert scratch_trunk[0] == "triple-0.01-s0"


def test_the_pretraining_runs_only_when_an_arm_needs_it() -> None:
    names = {j["name"] for j in plan(_params(arms=["scratch", "gan-ssl"]))}
    assert names == {"gan-pretrain", "scratch-0.01-s0", "scratch-0.01-s1"} | {
        "gan-ssl-0.01-s0",
        "gan-ssl-0.01-s1",
    }
    # a triple trunk read from the GAN, but no triple arm chosen: nothing reads the pretraining,
    # and no G needs the reference judge
    alone = {j["name"] for j in plan(_params(arms=["scratch-ssl"], triple_trunk="gan"))}
    assert alone == {"scratch-ssl-0.01-s0", "scratch-ssl-0.01-s1"}
    assert "reference" in {j["name"] for j in plan(_params(arms=["triple-flat"]))}


def test_gan_ssl_plays_scratch_ssl_without_a_generative_model() -> None:
    params = _params()
    gan_ssl = arm_game(params, "gan-ssl", 100, "cpu").triple
    ssl = arm_game(params, "scratch-ssl", 100, "cpu").triple
    triple = arm_game(params, "triple", 100, "cpu").triple
    assert gan_ssl is not None and ssl is not None and triple is not None
    assert gan_ssl == ssl and not gan_ssl.generative and gan_ssl.unlabelled != "none"
    assert triple.generative and triple.unlabelled == gan_ssl.unlabelled
    assert job_cost("gan-ssl-0.01-s0", params) == job_cost("scratch-ssl-0.01-s0", params)


def test_the_pretraining_the_triple_arms_wait_for_sets_the_pace() -> None:
    # Under a budget without --scale, a job that does not lead waits for a scale; the triple
    # jobs, which lead otherwise, cannot start before the pretraining they read has finished.
    labelled = np.arange(10)
    assert pretraining_leads(StudyConfig(triple_trunk="gan"), None)
    assert not pretraining_leads(StudyConfig(triple_trunk="scratch"), None)  # a triple job leads
    assert not pretraining_leads(StudyConfig(triple_trunk="gan"), labelled)  # gan-semi's own GAN


def test_the_study_reads_a_config_through_its_base_chain() -> None:
    # label_efficiency_cpu_teacher_d -> _randaugment_budget -> _budget -> _long_gan -> _cpu
    params = load_params("pipelines/configs/label_efficiency_cpu_teacher_d.yaml", False, "cpu")
    game = params.triple.triple
    assert game is not None and game.teacher_d_weight == 0.5 and game.strong_view == "randaugment"
    assert (params.study.steps, params.gan.steps, params.classifier.hidden) == (8000, 6000, 256)
    assert params.study.seeds == {0.01: [0, 1, 2]} and params.triple.device == "cpu"
