"""The service's settings: input limits, batching, where the model comes from.

Read from the YAML named by ``HIERGAN_SERVICE_CONFIG`` (default ``serving/service.yaml``) so that
limits change without code; environment variables pick the model.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from models.runtime.quantize import Quantization
from serving.ood import OodPolicy
from serving.request_log import RequestLogConfig

DEFAULT_CONFIG = Path(__file__).with_name("service.yaml")
CONFIG_ENV = "HIERGAN_SERVICE_CONFIG"
# A TrainedClassifier directory (development, tests) ...
MODEL_DIR_ENV = "HIERGAN_MODEL_DIR"
# ... else a BentoML model tag; a bento pins this to the model it was built with.
BENTO_MODEL_ENV = "HIERGAN_BENTO_MODEL"
BENTO_MODEL_NAME = "hiergan"


class InputLimits(BaseModel):
    """What one request may carry; beyond these the answer is 413 or 400, never a crash."""

    model_config = ConfigDict(extra="forbid")

    max_request_bytes: int = Field(32 * 2**20, gt=0)
    max_file_bytes: int = Field(8 * 2**20, gt=0)
    max_pixels: int = Field(4096 * 4096, gt=0)
    max_images: int = Field(64, gt=0)
    max_top_k: int = Field(10, gt=0)


class BatchingConfig(BaseModel):
    """BentoML adaptive batching of the array endpoint."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(64, gt=0)
    max_latency_ms: int = Field(500, gt=0)
    threads: int = Field(1, gt=0, description="batches one worker's fast path runs at once")


class ServiceConfig(BaseModel):
    """All service settings."""

    model_config = ConfigDict(extra="forbid")

    limits: InputLimits = Field(default_factory=InputLimits)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    request_log: RequestLogConfig = Field(default_factory=RequestLogConfig)
    workers: int = Field(1, gt=0, description="BentoML worker processes")
    torch_threads: int | None = Field(
        None, gt=0, description="per worker; default cores // workers (at least 1)"
    )
    quantization: Quantization = Field(
        "none",
        description="dynamic-int8: the linear layers' weights in int8 (activations per batch); "
        "static-int8: the trunk's convolutions and the neck in int8 with the artifact's "
        "activation ranges, answers independent of the batch (CPU only)",
    )
    fast_path: bool = Field(True, description="serving/fast_path.py for well-formed requests")
    access_log: bool = Field(True, description="BentoML's per-request access log lines")
    trace_classify: bool = Field(
        False,
        description="the classify routes go through BentoML's tracing middleware (set true "
        "when a tracing exporter is configured); off, they skip it",
    )
    gc_gen0_threshold: int = Field(
        700, ge=1, description="gc.set_threshold's first value in each worker (Python's: 700)"
    )
    ood: OodPolicy = Field(default_factory=OodPolicy)

    def threads_per_worker(self, cores: int | None = None) -> int:
        """Torch threads for one worker: never more threads than cores across the workers."""
        cores = cores or len(os.sched_getaffinity(0))
        fair = max(1, cores // self.workers)
        return min(self.torch_threads, fair) if self.torch_threads else fair


def load_service_config(path: str | Path | None = None) -> ServiceConfig:
    """The config at ``path``, else ``$HIERGAN_SERVICE_CONFIG``, else ``serving/service.yaml``."""
    path = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    raw = yaml.safe_load(path.read_text()) or {}
    return ServiceConfig.model_validate(raw)
