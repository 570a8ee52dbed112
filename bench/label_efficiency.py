"""Label-efficiency study: does a generative model make the classifier better when labels are few?

Nine arms (``bench/label_efficiency_arms.py``: scratch, scratch-ssl, gan, gan-ssl, gan-semi,
gan-semi-head, triple, triple-no-rp, triple-flat) train the same hierarchical classifier for the
same number of optimiser steps at each label fraction and seed of the config, and are scored on
the test split; the triple arms' generators are scored by a classifier trained on all labels
(conditional fidelity per level). Jobs run as parallel processes (``--jobs``), each writing its
result as soon as it finishes; a global ``--budget-seconds`` stops whatever still runs (jobs stop
training at the deadline and say so), and the summary is built from whatever finished.

    python bench/label_efficiency.py --quick
    python bench/label_efficiency.py --config pipelines/configs/label_efficiency_cpu.yaml
    python bench/label_efficiency.py --device cuda --jobs 12 --budget-seconds 230 --out $OUT

Results: ``<out>/label_efficiency.md`` and ``.json`` (``<out>`` = ``--out``, else ``$OUT``, else
``bench/results``; ``--quick`` writes ``label_efficiency_quick.*`` to a temporary folder);
per-job results in ``<runs>`` (``--runs``, default ``<out>/label_efficiency_runs``). The last line
printed is one JSON object with the headline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench import label_efficiency_arms as arms  # noqa: E402
from bench import label_efficiency_report as report  # noqa: E402
from bench.label_efficiency_pace import COST, Pace  # noqa: E402
from models.data.ingest import build_dataset  # noqa: E402
from pipelines.run_config import load_run_config  # noqa: E402

SUMMARY_RESERVE_S = 15.0  # seconds kept at the end of the budget for the summary
EVAL_RESERVE_S = 15.0  # seconds a job keeps after its training deadline to evaluate and write
MIN_START_S = 20.0  # no job starts with less than this left before the training deadline


def load_params(path: str, quick: bool, device: str) -> arms.StudyParams:
    """The study's config; ``--quick`` shrinks data, networks and steps (same code path)."""
    params, _ = load_run_config(path, arms.StudyParams)  # a config may name a ``base``
    params.triple = params.triple.model_copy(update={"device": device})
    if quick:
        params.dataset.subsample = {"train": 2000, "val": 300, "test": 1000}
        small = {"latent_dim": 16, "g_width": 16, "d_width": 16}
        for key in ("gan", "triple"):
            cfg = getattr(params, key)
            arch = cfg.architecture.model_copy(update=small)
            setattr(params, key, cfg.model_copy(update={"architecture": arch, "steps": 30}))
        params.classifier = params.classifier.model_copy(update={"hidden": 32})
        params.study = params.study.model_copy(
            update={
                "steps": 30,
                "reference_steps": 30,
                "seeds": {0.05: [0], 0.2: [0]},
                "samples_per_leaf": 10,
            }
        )
    return params


def plan(params: arms.StudyParams) -> list[dict[str, Any]]:
    """Every job, heaviest first (the order they start in), with what each waits for."""
    chosen = set(params.study.arms)
    jobs: list[dict[str, Any]] = []
    # only what a chosen arm reads: the reference judges the triple arms' G, the pretraining is
    # the trunk of the arms that start from the GAN
    if any(a.startswith("triple") for a in chosen):
        jobs.append({"name": "reference", "after": []})
    if any(arms.reads_pretrained_gan(a, params.study) for a in chosen):
        jobs.append({"name": "gan-pretrain", "after": []})
    order = ["triple", "triple-flat", "triple-no-rp", "gan-semi", "scratch-ssl", "gan-ssl"]
    order += ["scratch", "gan"]
    for arm in order:
        if arm not in chosen and not (arm == "gan-semi" and "gan-semi-head" in chosen):
            continue
        for fraction, seeds in sorted(params.study.seeds.items()):
            for seed in seeds:
                after = ["gan-pretrain"] if arms.reads_pretrained_gan(arm, params.study) else []
                jobs.append({"name": arms.job_name(arm, fraction, seed), "after": after})
    return jobs


def inline_order(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The order to run ``jobs`` in one process: a triple job (the pace-setter) first.

    Every job comes after the jobs it waits for (the triple arms read the GAN pretraining's trunk).
    """
    by_name = {job["name"]: job for job in jobs}
    ordered: list[dict[str, Any]] = []

    def add(job: dict[str, Any]) -> None:
        if job in ordered:
            return
        for name in job["after"]:
            if name in by_name:
                add(by_name[name])
        ordered.append(job)

    for job in sorted(jobs, key=lambda j: not j["name"].startswith("triple")):
        add(job)
    return ordered


def job_cost(name: str, params: arms.StudyParams) -> float:
    """A job's work at the configured steps, in triple steps (:data:`pace.COST`)."""
    s = params.study
    if name == "reference":
        return COST["reference"] * s.reference_steps
    if name == "gan-pretrain":
        return COST["gan-step"] * params.gan.steps
    arm = arms.parse_job(name)[0]
    extra = COST["gan-step"] * params.gan.steps if arm == "gan-semi" else 0.0
    return COST[arm] * s.steps + extra


def run_job(name: str, params: arms.StudyParams, pace: Pace) -> None:
    """Run one job in this process and write its result(s) to ``pace.runs``."""
    data = build_dataset(params.dataset)
    runs = pace.runs
    if name == "reference":
        row, game = arms.run_classifier_arm(data, params, "reference", 1.0, 0, pace)
        arms.save_state(arms.weights_dir(runs) / "reference.safetensors", game.players.teacher)
        arms.write_json(runs / "reference.json", row)
        return
    if name == "gan-pretrain":
        trainer, seconds, truncated = arms.pretrain_gan(data, params, pace, None, 0)
        arms.save_state(arms.weights_dir(runs) / "gan-pretrain.safetensors", trainer.discriminator)
        info = {"steps": trainer.step, "seconds": round(seconds, 1), "truncated": truncated}
        arms.write_json(runs / "gan-pretrain.json", info)
        return
    arm, fraction, seed = arms.parse_job(name)
    pretrained = arms.reads_pretrained_gan(arm, params.study)
    if arm == "gan-semi":
        row = _gan_semi(data, params, fraction, seed, pace)
    else:
        trunk = None
        if pretrained:
            trunk = arms.load_state(arms.weights_dir(runs) / "gan-pretrain.safetensors")
        row, game = arms.run_classifier_arm(data, params, arm, fraction, seed, pace, trunk)
        if pretrained:
            pre = json.loads((runs / "gan-pretrain.json").read_text())
            row |= {"pretrain_steps": pre["steps"], "pretrain_seconds": pre["seconds"]}
            row["seconds"] = round(row["seconds"] + pre["seconds"], 1)
        if arm.startswith("triple"):
            row |= arms.run_triple_extras(data, game, params, name, runs)
    arms.write_json(runs / f"{name}.json", row)


def _gan_semi(
    data: Any, params: arms.StudyParams, fraction: float, seed: int, pace: Pace
) -> dict[str, Any]:
    """The semi-supervised GAN on this subset; C fine-tuned from it, and its own head."""
    labelled = arms.labelled_indices(data, fraction, seed)
    trainer, gan_seconds, gan_cut = arms.pretrain_gan(data, params, pace, labelled, seed)
    d = trainer.discriminator
    trunk = {k: v.detach().cpu() for k, v in d.state_dict().items()}
    row, game = arms.run_classifier_arm(data, params, "gan-semi", fraction, seed, pace, trunk)
    test_x, test_y = data.split("test")
    head = arms.batched_logits(d, test_x, lambda net, x: net(x), trainer.device)
    head_scores = arms.scores(head.log_softmax(1), test_y, data)
    from models.tree.merge import TreeTensors

    merged = arms.merge_discriminator(
        data,
        game.players.teacher,
        lambda x: arms.batched_logits(d, x, lambda net, t: net(t), trainer.device),
        TreeTensors(data.hierarchy, game.device),
    )
    return (
        row
        | merged
        | {
            "pretrain_steps": trainer.step,
            "pretrain_seconds": round(gan_seconds, 1),
            "seconds": round(row["seconds"] + gan_seconds, 1),
            "truncated": row["truncated"] or gan_cut,
            "head": {**head_scores, "steps": trainer.step, "seconds": round(gan_seconds, 1)},
        }
    )


def schedule(
    jobs: list[dict[str, Any]],
    argv_base: list[str],
    runs: Path,
    n_jobs: int,
    deadline: float,
    done: dict[str, str] | None = None,
) -> dict[str, str]:  # long because the loop reads best in one piece
    """Run jobs as up to ``n_jobs`` processes, dependencies first; their end states.

    ``done``: the states of jobs finished before (a job here may wait for one of them).
    """
    pending, running, state = list(jobs), {}, dict(done or {})
    logs = runs / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    while pending or running:
        for name, proc in list(running.items()):
            if proc.poll() is not None:
                state[name] = "done" if proc.returncode == 0 else f"failed ({proc.returncode})"
                del running[name]
        if time.time() > deadline + EVAL_RESERVE_S:
            for name, proc in running.items():
                proc.kill()
                state[name] = "killed at the budget"
            state |= {job["name"]: "not started (budget)" for job in pending}
            break
        for job in list(pending):
            if len(running) >= n_jobs:
                break
            blocked = [a for a in job["after"] if state.get(a) != "done"]
            if any(a in state for a in blocked):  # a prerequisite failed
                state[job["name"]] = f"skipped ({blocked[0]} {state[blocked[0]]})"
                pending.remove(job)
            elif not blocked and time.time() < deadline - MIN_START_S:
                log = (logs / f"{job['name']}.log").open("w")
                cmd = [*argv_base, "--job", job["name"]]
                running[job["name"]] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
                pending.remove(job)
        time.sleep(0.5)
    return state


def fix_scale(runs: Path, scale: float) -> None:
    """Write ``scale.json`` before any job starts: every job reads it instead of measuring."""
    if not 0 < scale <= 1:
        raise SystemExit(f"--scale must be in (0, 1], got {scale}")
    path = runs / "scale.json"
    if path.exists() and json.loads(path.read_text())["scale"] != scale:
        raise SystemExit(f"{path} already fixes another scale; resume with that one")
    path.write_text(json.dumps({"scale": scale, "fixed": True}))


def main() -> None:
    """Plan, run (inline or as processes), then summarise; the JSON headline last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="pipelines/configs/label_efficiency.yaml")
    parser.add_argument("--quick", action="store_true", help="small data and steps, same path")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes (1: inline)")
    parser.add_argument("--budget-seconds", type=float, default=None, help="wall-clock budget")
    parser.add_argument("--out", default=None, help="default: $OUT, else bench/results")
    parser.add_argument("--runs", default=None, help="per-job results; default <out>/..._runs")
    parser.add_argument("--only", nargs="*", default=None, help="run only these job names")
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="fix every arm's steps (and warm-ups) to this share of the config's instead of "
        "measuring a scale under --budget-seconds (which then only stops what overruns)",
    )
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--pace", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    started = time.time()
    fallback = "/tmp/hiergan-label-efficiency-quick" if args.quick else "bench/results"
    out = Path(args.out or os.environ.get("OUT") or fallback)
    runs = Path(args.runs) if args.runs else out / "label_efficiency_runs"
    runs.mkdir(parents=True, exist_ok=True)
    params = load_params(args.config, args.quick, args.device)
    if args.job:  # one job, in a process of its own
        threads = int(os.environ.get("HIERGAN_JOB_THREADS", "0")) or None
        if threads:
            torch.set_num_threads(threads)
        params.triple = params.triple.model_copy(update={"num_threads": threads})
        params.gan = params.gan.model_copy(update={"num_threads": threads})
        cost, longest, parallel, deadline = json.loads(args.pace)
        run_job(args.job, params, Pace(runs, cost, longest, parallel, deadline))
        return
    deadline = None  # jobs stop training here; they are killed EVAL_RESERVE_S later
    if args.budget_seconds:
        deadline = started + args.budget_seconds - SUMMARY_RESERVE_S - EVAL_RESERVE_S
    if args.scale is not None:
        fix_scale(runs, args.scale)
    jobs = [j for j in plan(params) if args.only is None or j["name"] in args.only]
    todo = [j for j in jobs if not (runs / f"{j['name']}.json").exists()]
    costs = [job_cost(j["name"], params) for j in todo] or [1.0]
    parallel = max(1, min(args.jobs, len(todo)))
    pace = Pace(runs, sum(costs), max(costs), parallel, deadline)
    # every finished job counts as done, also one outside --only that a job here waits for
    state: dict[str, str] = {
        j["name"]: "done" for j in plan(params) if (runs / f"{j['name']}.json").exists()
    }
    if not args.summarise_only and args.jobs <= 1:
        for job in inline_order(todo):
            run_job(job["name"], params, pace)
            state[job["name"]] = "done"
    elif not args.summarise_only:
        base = [sys.executable, __file__, "--config", args.config, "--device", args.device]
        base += ["--runs", str(runs), *(["--quick"] if args.quick else [])]
        base += ["--pace", json.dumps([pace.plan_cost, pace.longest, parallel, deadline])]
        os.environ["HIERGAN_JOB_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
        state |= schedule(todo, base, runs, args.jobs, deadline or float("inf"), state)
    summary = report.summarise(params, runs, out, state, args, time.time() - started)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
