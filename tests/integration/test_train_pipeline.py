"""The train pipeline end to end, through its CLI, in an isolated ZenML store (tmp)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import make_fashion_like, write_idx
from tests.integration.pipeline_runs import (
    SmokeRun,
    pipeline_env,
    run_cli,
    smoke_config,  # noqa: F401 - re-exported
)

pytestmark = pytest.mark.integration

# Re-exported for tests that import them from here.
_env = pipeline_env
_run = run_cli


def test_smoke_pipeline_completes_and_stores_artifacts(smoke_run: SmokeRun) -> None:
    assert "completed" in smoke_run.stdout
    facts = smoke_run.facts
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
        "fit_ood_guard",
        "evaluate_classifier",
        "evaluate_ood",
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
    assert (smoke_run.tmp / "checkpoints" / gan["run_key"] / "checkpoint.pt").exists()
    assert facts["classifier_type"] == "ModelArtifact"
    # one map per level, chosen on val among the strategies (identity when none is no worse)
    assert list(facts["calibration"]) == ["category", "group", "item"]
    assert set(facts["calibration"].values()) <= {
        "identity",
        "temperature",
        "vector",
        "matrix",
        "dirichlet",
    }
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
    guard = facts["guard"]
    assert guard["scorer"] == "knn_rmd_complexity" and guard["discriminator"] is not None
    assert guard["info"]["fit_images"] == 600 and guard["info"]["val_images"] == 200
    assert guard["neighbours"]["count"] == 600 and guard["pixels"]["dim"] == 784
    # train.yaml's complexity term: a diagonal pixel Gaussian and zlib lengths
    assert (guard["pixels"]["density"], guard["pixels"]["compressor"]) == ("diagonal", "zlib")
    # fitted after calibration's activation ranges: a threshold for each int8 runtime too
    assert set(guard["runtime_thresholds"]) == {"dynamic-int8", "static-int8"}
    assert facts["mlflow_ood_metrics"] == [
        "ood_threshold",
        "ood_threshold_dynamic_int8",
        "ood_threshold_static_int8",
    ]
    ood = facts["ood"]
    assert ood["test_images"] == 200 and ood["ood_scorer"] == "knn_rmd_complexity"
    assert 0.0 <= ood["ood_auroc"] <= 1.0 and "ood_auroc_noise" in ood


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
