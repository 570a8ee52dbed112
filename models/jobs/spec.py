"""A data-parallel training job as files: what to train, on what, and where results go.

The process that launches a job (a pipeline step, or a Kubernetes pod of a multi-pod step)
writes a :class:`JobSpec` and the data it names into a job folder; every rank reads them. Nothing
is pickled: the dataset is the in-memory artifact's ``.npz`` + JSON (hash verified) or the
sharded artifact's manifest, the GAN is safetensors + JSON.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from models.data.dataset import LabelledImages
from models.data.sharded import Dataset, ShardedDataset
from models.runtime.distributed import DistributedConfig

SPEC_FILE = "job.json"
RESULT_FILE = "result.json"
HISTORY_FILE = "history.jsonl"


class JobSpec(BaseModel):
    """One job: ``kind`` with its config, the data, and the folders it reads and writes."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["gan", "classifier"]
    config: dict[str, Any]
    distributed: DistributedConfig
    data_dir: str
    data_storage: Literal["memory", "shards"]
    gan_dir: str | None = None  # classifier: the trained GAN (its discriminator is the trunk)
    result_dir: str  # rank 0 writes result.json (and, for the classifier, the weights) here


def write_data(data: Dataset, folder: Path) -> Literal["memory", "shards"]:
    """Save the dataset artifact for the ranks to read; which kind it is."""
    folder.mkdir(parents=True, exist_ok=True)
    data.save(folder)
    return "shards" if isinstance(data, ShardedDataset) else "memory"


def read_data(spec: JobSpec) -> Dataset:
    """The dataset a job names (hash verified on load)."""
    if spec.data_storage == "shards":
        return ShardedDataset.load(spec.data_dir)
    return LabelledImages.load(spec.data_dir)


def classifier_job_key(config: dict[str, Any], data_hash: str, gan_key: str) -> str:
    """Identity of a classifier job: its result is reused only for the same config and inputs."""
    blob = json.dumps({"config": config, "data": data_hash, "gan": gan_key}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_result(folder: str | Path) -> dict[str, Any] | None:
    """A finished job's ``result.json``, or None."""
    path = Path(folder) / RESULT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_result(folder: str | Path, result: dict[str, Any]) -> None:
    """Write ``result.json`` atomically (last: its presence means the job finished)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{RESULT_FILE}.partial"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(folder / RESULT_FILE)


def read_history(folder: str | Path) -> list[dict[str, float]]:
    """The per-log-step metrics rank 0 appended, in order."""
    path = Path(folder) / HISTORY_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
