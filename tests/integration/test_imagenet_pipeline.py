"""The train pipeline end to end on a generated ImageNet-style folder, through the sharded path.

Seven real ImageNet synsets (a few JPEGs each, one of them corrupt), the WordNet tree, shards and
a manifest in the artifact store, validation and training streamed from them: every step runs,
the corrupt image is skipped and named in the validation step's metadata and counted by the GAN
step, and the dataset artifact is the manifest (its content hash, the shards' folder).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.imagenet_like import WNIDS, make_imagenet_like
from tests.integration.pipeline_runs import inspect_train_run
from tests.integration.test_train_pipeline import _env, _run

pytestmark = pytest.mark.integration

INSPECT = r"""
import json
from zenml.client import Client
run = Client().get_pipeline("train_pipeline").last_run
dataset = run.steps["ingest_dataset"].outputs["dataset"][0]
data = dataset.load()
validation = run.steps["validate_dataset"].run_metadata
print(json.dumps({
    "status": run.status.value,
    "steps": {name: s.status.value for name, s in run.steps.items()},
    "type": type(data).__name__,
    "uri": data.uri,
    "hash": data.content_hash,
    "artifact_hash": dataset.content_hash,
    "counts": {s: data.count(s) for s in ("train", "val", "test")},
    "levels": list(data.hierarchy.level_names),
    "paths": [list(p) for p in data.hierarchy.paths],
    "skipped_files": validation["skipped_files"],
    "gan": run.steps["pretrain_gan"].outputs["gan"][0].load().info,
    "evaluation": run.steps["evaluate_classifier"].outputs["evaluation"][0].load(),
    "guard": run.steps["guard_training_run"].outputs["run_guard"][0].load(),
}))
"""


def imagenet_config(tmp_path: Path, data_dir: Path) -> Path:
    config = yaml.safe_load((REPO / "pipelines/configs/train_imagenet.yaml").read_text())
    smoke = yaml.safe_load((REPO / "pipelines/configs/train_smoke.yaml").read_text())["parameters"]
    params = config["parameters"]
    params["dataset"].update(
        data_dir=str(data_dir),
        image_size=32,
        val_fraction=0.15,
        shards={"max_images_per_shard": 40, "shuffle_buffer": 32, "workers": 1},
    )
    params["validation"] = {
        "expected_image_shape": [32, 32, 3],
        "min_class_count": {"train": 10, "val": 2, "test": 5},
        "max_skipped_fraction": 0.05,
    }
    params["gan"] = smoke["gan"] | {
        "batch_size": 16,
        "checkpoint_root": str(tmp_path / "checkpoints"),
        "probe_train_size": 64,
    }
    params["classifier"] = smoke["classifier"] | {"batch_size": 16}
    params["calibration"] = smoke["calibration"]
    params["robustness"] = smoke["robustness"] | {
        "attack_images": 35,
        "corruption_images": 35,
        "neighbour_pool": 40,
        "gate": {"attack": "pgd", "eps": 0.1, "level": "fine", "min_accuracy": 0.0},
    }
    config["enable_cache"] = False
    path = tmp_path / "imagenet.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_imagenet_folder_trains_through_shards(tmp_path: Path) -> None:
    data_dir = make_imagenet_like(tmp_path / "imagenet", per_class=18, val_per_class=5)
    corrupt = data_dir / "train" / WNIDS[0] / f"{WNIDS[0]}_3.JPEG"
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # truncated: packed as is, fails to decode
    env = _env(tmp_path)
    proc = _run(
        ["-m", "pipelines.train_pipeline", "--config", str(imagenet_config(tmp_path, data_dir))],
        env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    facts = inspect_train_run(env, tmp_path, INSPECT)
    assert facts["status"] == "completed"
    assert set(facts["steps"].values()) == {"completed"}
    assert facts["type"] == "ShardedDataset"
    # the shards live in the artifact store; the artifact is the manifest, hash-keyed for caching
    assert "hiergan-shards" in facts["uri"] and facts["artifact_hash"] == facts["hash"]
    assert facts["counts"]["test"] == 5 * len(WNIDS)  # val/ is the official held-out set
    assert sum(facts["counts"].values()) == 23 * len(WNIDS)
    assert facts["levels"] == ["level1", "level2", "synset"]
    assert ["vertebrate", "carnivore", "tabby"] in facts["paths"]
    named = [s["path"] for s in facts["skipped_files"]]
    assert len(named) == 1 and "undecodable image" in facts["skipped_files"][0]["reason"]
    assert named[0].startswith(f"train/{WNIDS[0]}/{corrupt.name} (train-")  # file, shard, key
    gan = facts["gan"]
    assert gan["steps"] == 20 and gan["dataset_hash"] == facts["hash"]
    assert gan["skipped_images"] >= 1  # met while streaming, skipped, the epoch went on
    assert facts["evaluation"]["test_images"] == 5 * len(WNIDS)
    assert facts["guard"]["marked_failed"] == []
