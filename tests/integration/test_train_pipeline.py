"""The train pipeline end to end, through its CLI, in an isolated ZenML store (tmp)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, make_fashion_like, write_idx

pytestmark = pytest.mark.integration

INSPECT = r"""
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
    "docs_html": "<html" in run.steps["validate_dataset"].outputs["data_docs"][0].load(),
    "gan_type": run.steps["pretrain_gan"].outputs["gan"][0].type.value,
    "gan_info": run.steps["pretrain_gan"].outputs["gan"][0].load().info,
    "classifier_type": out("fit_hierarchical_classifier", "classifier").type.value,
    "temperatures": out("calibrate_classifier", "calibrated_classifier").load().temperatures,
    "evaluation": out("evaluate_classifier", "evaluation").load(),
    "eval_viz": [v.type.value for v in report.visualizations],
    "robustness": out("evaluate_robustness", "robustness").load(),
    "robustness_viz": [
        v.type.value for v in out("evaluate_robustness", "robustness_report").visualizations
    ],
}))
"""


def _env(tmp_path: Path) -> dict[str, str]:
    # the stack's own MLflow store, not one another test pointed MLflow at
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") or "TELEMETRY" in k}
    env["ZENML_CONFIG_PATH"] = str(tmp_path / "zenml")
    env.pop("ZENML_STORE_URL", None)
    env["HIERGAN_OFFLINE"] = "1"
    env["BENTOML_HOME"] = str(tmp_path / "bentoml")  # package_bento builds into tmp, not ~/bentoml
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def smoke_config(tmp_path: Path) -> Path:
    """The smoke config, checkpointing into tmp_path."""
    config = yaml.safe_load((REPO / "pipelines/configs/train_smoke.yaml").read_text())
    config["parameters"]["gan"]["checkpoint_root"] = str(tmp_path / "checkpoints")
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_smoke_pipeline_completes_and_stores_artifacts(
    tmp_path: Path, real_fashion_mnist_dir: Path
) -> None:
    env = _env(tmp_path)
    proc = _run(["-m", "pipelines.train_pipeline", "--config", str(smoke_config(tmp_path))], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "completed" in proc.stdout

    # ZenML needs a main module file to resolve sources when it loads artifacts
    script = tmp_path / "inspect_run.py"
    script.write_text(INSPECT)
    info = _run([str(script)], env | {"PYTHONPATH": str(REPO)})
    assert info.returncode == 0, info.stderr[-3000:]
    facts = json.loads(info.stdout.strip().splitlines()[-1])
    assert facts["status"] == "completed"
    assert facts["stack"] == "hiergan-local"
    assert set(facts["steps"]) == {
        "guard_training_run",
        "ingest_dataset",
        "validate_dataset",
        "enforce_data_validation",
        "pretrain_gan",
        "fit_hierarchical_classifier",
        "calibrate_classifier",
        "evaluate_classifier",
        "evaluate_robustness",
        "enforce_robustness",
        "package_bento",
        "register_model",
    }
    assert set(facts["steps"].values()) == {"completed"}
    assert facts["outputs"]["validate_dataset"] == ["data_checks", "data_docs"]
    assert facts["splits"] == {"train": 600, "val": 200, "test": 200}
    assert facts["hash"] == facts["meta_hash"] == facts["mlflow_dataset_hash"]
    assert "image" in facts["viz"]
    assert facts["docs_html"]
    assert facts["gan_type"] == "ModelArtifact"
    gan = facts["gan_info"]
    assert gan["steps"] == 20 and gan["dataset_hash"] == facts["hash"]
    assert {"probe_trained_item", "probe_random_item", "probe_trained_category"} <= set(gan)
    assert (tmp_path / "checkpoints" / gan["run_key"] / "checkpoint.pt").exists()
    assert facts["classifier_type"] == "ModelArtifact"
    assert len(facts["temperatures"]) == 3 and all(t > 0 for t in facts["temperatures"])
    evaluation = facts["evaluation"]
    assert evaluation["split"] == "test" and evaluation["test_images"] == 200
    assert evaluation["path_consistency_merged"] == 1.0
    for key in (
        "global_accuracy_fine",
        "greedy_accuracy_fine",
        "global_mistake_severity",
        "ece_fine_after",
    ):
        assert 0.0 <= evaluation[key] <= 3.0, key
    assert "html" in facts["eval_viz"]
    robustness = facts["robustness"]
    assert robustness["attack_images"] == 100 and robustness["gate"]["passed"]
    assert robustness["dataset_hash"] == facts["hash"]
    for key in ("clean_accuracy_fine", "robust_accuracy_fine_pgd_eps0.1", "corruption_ece_fine"):
        assert 0.0 <= robustness[key] <= 1.0, key
    assert "html" in facts["robustness_viz"]


def test_corrupted_data_stops_at_the_gate_with_a_readable_message(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    make_fashion_like(data_dir, n_train=200, n_test=50)
    raw = data_dir / "FashionMNIST" / "raw"
    from models.data.sources import read_idx

    train = read_idx(raw / "train-images-idx3-ubyte.gz").copy()
    test = read_idx(raw / "t10k-images-idx3-ubyte.gz")
    train[:5] = test[:5]  # five test images leak into train
    train[5:10] = 0  # and five are blank
    write_idx(raw / "train-images-idx3-ubyte.gz", train)
    config = tmp_path / "corrupt.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "enable_cache": False,
                "parameters": {
                    "dataset": {"data_dir": str(data_dir), "allow_download": False},
                    "validation": {"min_class_count": {"train": 5, "val": 1, "test": 1}},
                },
            }
        )
    )
    env = _env(tmp_path)
    proc = _run(["-m", "pipelines.train_pipeline", "--config", str(config)], env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert (
        "train_pipeline failed in enforce_data_validation: 3 critical data check(s) failed" in out
    )
    assert "expect_column_values_to_be_between[pixel_std]" in out
    assert "leakage_train_test: 5 test images also in train" in out


def test_invalid_config_key_fails_before_running(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("parameters:\n  dataset:\n    sorce: cifar10\n")
    proc = _run(["-m", "pipelines.train_pipeline", "--config", str(config)], _env(tmp_path))
    assert proc.returncode != 0
    assert "parameters.dataset.sorce: Extra inputs are not permitted" in proc.stderr
