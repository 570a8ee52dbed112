"""Pipeline runs through the CLIs, in isolated ZenML stores, shared by the integration tests.

A ZenML pipeline run costs tens of seconds (ZenML start-up alone 11-16 s), so the smoke train run
is made once per test session (``smoke_run`` in ``tests/integration/conftest.py``) and every
test that needs a trained, packaged and registered model starts from it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.conftest import REPO

INSPECT_TRAIN_RUN = r"""
import json, sys
from zenml.client import Client
import mlflow
client = Client()
run = client.get_pipeline("train_pipeline").last_run
def out(step, name):
    return run.steps[step].outputs[name][0]
report = out("evaluate_classifier", "evaluation_report")
steps = {name: s.status.value for name, s in run.steps.items()}
outputs = {name: sorted(s.outputs) for name, s in run.steps.items()}
dataset = run.steps["ingest_dataset"].outputs["dataset"][0]
data = dataset.load()
viz = [v.type.value for v in dataset.visualizations]
tracker = client.active_stack.experiment_tracker
mlflow.set_tracking_uri(tracker.get_tracking_uri())
runs = mlflow.search_runs(experiment_names=["train_pipeline"], output_format="list")
params = [r.data.params for r in runs if "dataset_hash" in r.data.params]
print(json.dumps({
    "status": run.status.value, "steps": steps, "outputs": outputs,
    "stack": client.active_stack_model.name,
    "hash": data.content_hash, "meta_hash": dataset.run_metadata.get("content_hash"),
    "splits": {k: len(v) for k, v in data.splits.items()}, "viz": viz,
    "mlflow_dataset_hash": params[0]["dataset_hash"] if params else None,
    "mlflow_ood_metrics": sorted({k for r in runs for k in r.data.metrics if "ood_thr" in k}),
    "docs_html": "<html" in run.steps["validate_dataset"].outputs["data_docs"][0].load(),
    "gan_type": run.steps["pretrain_gan"].outputs["gan"][0].type.value,
    "gan_info": run.steps["pretrain_gan"].outputs["gan"][0].load().info,
    "classifier_type": out("fit_hierarchical_classifier", "classifier").type.value,
    "calibration": out("calibrate_classifier", "calibrated_classifier").load().calibration_methods,
    "guard": out("fit_ood_guard", "guarded_classifier").load().ood_info,
    "ood": out("evaluate_ood", "ood_evaluation").load(),
    "evaluation": out("evaluate_classifier", "evaluation").load(),
    "eval_viz": [v.type.value for v in report.visualizations],
    "robustness": out("evaluate_robustness", "robustness").load(),
    "robustness_viz": [
        v.type.value for v in out("evaluate_robustness", "robustness_report").visualizations
    ],
    "cached_steps": sorted(n for n, s in run.steps.items() if s.status.value == "cached"),
}))
"""


def pipeline_env(tmp_path: Path) -> dict[str, str]:
    """Environment of a CLI run in its own ZenML store (and BentoML home) under ``tmp_path``."""
    # the stack's own MLflow store, not one another test pointed MLflow at
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") or "TELEMETRY" in k}
    env["ZENML_CONFIG_PATH"] = str(tmp_path / "zenml")
    env.pop("ZENML_STORE_URL", None)
    env["HIERGAN_OFFLINE"] = "1"
    env["BENTOML_HOME"] = str(tmp_path / "bentoml")  # package_bento builds into tmp, not ~/bentoml
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``python <args>`` with ``env``; output captured."""
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def smoke_config(
    tmp_path: Path, enable_cache: bool = False, classifier_seed: int | None = None
) -> Path:
    """The smoke config, checkpointing into tmp_path.

    ``enable_cache=True`` drops the run-level ``enable_cache: false`` rather than setting it
    true, which would override the steps that must never be cached (package_bento,
    register_model), as ``train.yaml`` does. ``classifier_seed`` makes another classifier from
    the same data and GAN.
    """
    config = yaml.safe_load((REPO / "pipelines/configs/train_smoke.yaml").read_text())
    config["parameters"]["gan"]["checkpoint_root"] = str(tmp_path / "checkpoints")
    name = "smoke"
    if enable_cache:
        config.pop("enable_cache", None)
        name += "_cached"
    if classifier_seed is not None:
        config["parameters"]["classifier"]["seed"] = classifier_seed
        name += f"_seed{classifier_seed}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def inspect_train_run(
    env: dict[str, str], tmp_path: Path, inspect: str = INSPECT_TRAIN_RUN
) -> dict:
    """Facts of the store's last train run, read back through ZenML and MLflow.

    ``inspect`` is the script that prints them as JSON on its last line.
    """
    # ZenML needs a main module file to resolve sources when it loads artifacts
    script = tmp_path / "inspect_run.py"
    script.write_text(inspect)
    info = run_cli([str(script)], env | {"PYTHONPATH": str(REPO)})
    assert info.returncode == 0, info.stderr[-3000:]
    return json.loads(info.stdout.strip().splitlines()[-1])


@dataclass
class SmokeRun:
    """One smoke train run in its own store: how it was run and what it left."""

    tmp: Path
    env: dict[str, str]
    config: Path
    stdout: str
    facts: dict


def smoke_train_run(tmp_path: Path) -> SmokeRun:
    """Run the train pipeline with the smoke config in a fresh store under ``tmp_path``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    env = pipeline_env(tmp_path)
    config = smoke_config(tmp_path)
    proc = run_cli(["-m", "pipelines.train_pipeline", "--config", str(config)], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return SmokeRun(tmp_path, env, config, proc.stdout, inspect_train_run(env, tmp_path))
