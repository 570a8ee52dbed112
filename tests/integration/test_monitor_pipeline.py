"""The monitor pipeline through its CLI, in an isolated ZenML store: clean -> 0, shifted -> 3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from models.classifier.config import ClassifierConfig
from models.classifier.io import TrainedClassifier
from models.classifier.training import fit_classifier
from models.data.ingest import DatasetConfig, build_dataset
from models.gan.networks import GanArchitecture
from models.ood import OodConfig, fit_guard, with_guard
from tests.conftest import REPO, make_fashion_like

pytestmark = pytest.mark.integration

INSPECT = r"""
import json
import mlflow
from zenml.client import Client
client = Client()
run = client.get_pipeline("monitor_pipeline").last_run
report = run.steps["report_drift"].outputs["drift_report"][0]
features = run.steps["compute_drift_features"].outputs
mlflow.set_tracking_uri(client.active_stack.experiment_tracker.get_tracking_uri())
runs = mlflow.search_runs(experiment_names=["monitor_pipeline"], output_format="list")
last = max(runs, key=lambda r: r.info.start_time)
files = [a.path for a in mlflow.MlflowClient().list_artifacts(last.info.run_id, "drift")]
print(json.dumps({
    "viz": [v.type.value for v in report.visualizations],
    "ood_viz": [
        v.type.value
        for name in ("ood_batch_histogram", "ood_unusual_images")
        for v in features[name][0].visualizations
    ],
    "decision": run.steps["gate_drift"].outputs["drift_decision"][0].load()["drifted"],
    "mlflow_files": sorted(files),
    "mlflow_drift_detected": last.data.metrics.get("drift_detected"),
}))
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["ZENML_CONFIG_PATH"] = str(tmp_path / "zenml")
    env.pop("ZENML_STORE_URL", None)
    env["HIERGAN_OFFLINE"] = "1"
    return env


def _monitor(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.monitor_pipeline", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic Fashion-MNIST-like data, a tiny classifier trained on it, a monitor config."""
    root = tmp_path_factory.mktemp("monitor")
    # 12,000 train images: a 1,200-image val split, so Evidently uses its distance tests
    make_fashion_like(root / "data", n_train=12_000, n_test=1_000, seed=0)
    dataset_config = DatasetConfig(data_dir=str(root / "data"), allow_download=False)
    data = build_dataset(dataset_config)
    train_x, train_y = data.split("train")
    arch = GanArchitecture(latent_dim=8, g_width=8, d_width=8)
    config = ClassifierConfig(
        init="scratch", epochs=1, batch_size=128, hidden=16, feature_pool=2, num_threads=2
    )
    result = fit_classifier(config, arch, data.hierarchy, train_x[:3000], train_y[:3000])
    trained = TrainedClassifier.from_model(
        result.model, config, data.hierarchy, {"dataset_hash": data.content_hash}
    )
    # with an OOD guard, as the train pipeline saves it (no discriminator: this toy has none)
    val_x, _ = data.split("val")
    guard, _ = fit_guard(
        trained, None, train_x[:3000], train_y[:3000], val_x, OodConfig(fit_images=3000)
    )
    with_guard(trained, guard).save(root / "model")
    test_x, _ = data.split("test")
    np.savez(root / "clean.npz", images=test_x)
    np.savez(root / "shifted.npz", images=255 - test_x)  # inverted
    monitor_config = yaml.safe_load((REPO / "pipelines/configs/monitor.yaml").read_text())
    monitor_config["parameters"]["dataset"] = dataset_config.model_dump(exclude_defaults=True)
    monitor_config["parameters"]["report_dir"] = str(root / "reports")
    (root / "monitor.yaml").write_text(yaml.safe_dump(monitor_config))
    return {"root": root, "config": root / "monitor.yaml", "model": root / "model"}


def _decision(stdout: str) -> dict:
    line = next(x for x in stdout.splitlines() if x.startswith("drift decision: "))
    return json.loads(line.removeprefix("drift decision: "))


def test_clean_batch_passes_and_shifted_batch_exits_3(
    tmp_path: Path, monitored: dict[str, Path]
) -> None:
    env = _env(tmp_path)
    common = ["--config", str(monitored["config"]), "--model-dir", str(monitored["model"])]

    clean = _monitor(["--batch", str(monitored["root"] / "clean.npz"), *common], env)
    assert clean.returncode == 0, clean.stdout[-3000:] + clean.stderr[-3000:]
    decision = _decision(clean.stdout)
    assert decision["drifted"] is False and decision["reasons"] == []
    assert decision["n_reference"] == 1200 and decision["n_current"] == 1000
    assert decision["ood_share"] < 0.1  # the guard flags ~5 % of in-distribution images
    assert "no drift: all tests passed" in clean.stdout

    shifted = _monitor(["--batch", str(monitored["root"] / "shifted.npz"), *common], env)
    assert shifted.returncode == 3, shifted.stdout[-3000:] + shifted.stderr[-3000:]
    decision = _decision(shifted.stdout)
    assert decision["drifted"] is True and decision["reasons"]
    assert {"img_mean", "emb_pc1", "ood_score"} <= set(decision["drifted_columns"])
    assert decision["ood_share"] > 0.5  # negatives are out of distribution
    assert any("of the batch is out of distribution" in r for r in decision["reasons"])
    assert "DRIFT: " in shifted.stdout

    reports = sorted((monitored["root"] / "reports").glob("*.html"))
    assert len(reports) == 2
    report_line = next(x for x in shifted.stdout.splitlines() if x.startswith("drift report: "))
    report = Path(report_line.removeprefix("drift report: "))
    assert report in reports and "<html" in report.read_text()[:5000].lower()
    saved = json.loads(report.with_suffix(".json").read_text())
    assert saved["drifted"] is True
    assert saved["context"]["reference"]["split"] == "val"

    # the report is the step's HTML visualization and an MLflow artifact of the run
    script = tmp_path / "inspect_run.py"
    script.write_text(INSPECT)
    info = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO,
        env=env | {"PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert info.returncode == 0, info.stderr[-3000:]
    facts = json.loads(info.stdout.strip().splitlines()[-1])
    assert facts["viz"] == ["html"] and facts["decision"] is True
    assert facts["ood_viz"] == ["image", "image"]  # OOD histogram, most unusual images
    assert facts["mlflow_files"] == [
        "drift/ood_histogram.png",
        "drift/ood_unusual_images.png",
        "drift/report.html",
        "drift/summary.json",
    ]
    assert facts["mlflow_drift_detected"] == 1.0


def test_usage_and_config_errors_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("parameters:\n  gate:\n    on_drfit: retrain\n")
    proc = _monitor(["--batch", str(tmp_path), "--config", str(bad)], _env(tmp_path))
    assert proc.returncode == 2
    assert "parameters.gate.on_drfit: Extra inputs are not permitted" in proc.stderr
    proc = _monitor(["--batch", str(tmp_path / "missing.npz")], _env(tmp_path))
    assert proc.returncode == 2
    assert "missing.npz does not exist" in proc.stderr
