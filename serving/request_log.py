"""A bounded sample of the service's requests, for the drift monitor.

Off by default. When on, the service calls :meth:`RequestLog.record` with the images it
classified (uint8, after decoding and resizing: what the model saw) and its answers. Each image
is kept with probability ``sample_rate``; kept images are buffered and written as one shard
(``.npz`` images + ``.jsonl`` records, see :mod:`models.monitoring.request_store`) every
``shard_records`` images or ``max_buffer_seconds``. Before a shard is written the oldest shards
are deleted until the store holds at most ``max_records`` with it: the log is a ring of the most
recent traffic (what drift monitoring compares against the reference), and it never grows past
the bound.

``python -m pipelines.monitor_pipeline --batch <directory>`` reads the log.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.monitoring.request_store import (
    delete_shard,
    init_store,
    list_shards,
    read_store,
    remove_orphans,
    write_shard,
)

logger = logging.getLogger(__name__)

__all__ = ["RequestLog", "RequestLogConfig", "read_request_log"]

LOCK_FILE = ".write.lock"


class RequestLogConfig(BaseModel):
    """Request recording settings (``request_log:`` in the service config)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="record a sample of requests (off by default)")
    directory: str = Field("request_log", description="the store; the monitor's --batch")
    max_records: int = Field(10_000, gt=0, description="images kept at most (oldest go first)")
    sample_rate: float = Field(1.0, gt=0, le=1, description="probability of keeping an image")
    shard_records: int = Field(256, gt=0, description="images per shard file")
    max_buffer_seconds: float = Field(60.0, gt=0, description="write a partial shard after this")
    seed: int | None = Field(None, description="sampling seed (None: random)")


class RequestLog:
    """Thread-safe recorder of a bounded, sampled ring of requests.

    Args:
        directory: the store (created if missing).
        max_records: images kept on disk at most.
        sample_rate: probability of keeping each image.
        seed: sampling seed; ``None`` draws one.
        shard_records: images per shard (at most ``max_records``).
        max_buffer_seconds: a partial buffer is written once its oldest image is this old.
    """

    def __init__(
        self,
        directory: str | Path,
        max_records: int = 10_000,
        sample_rate: float = 1.0,
        seed: int | None = None,
        shard_records: int = 256,
        max_buffer_seconds: float = 60.0,
    ) -> None:
        if max_records < 1:
            raise ValueError(f"max_records must be at least 1, got {max_records}")
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        self.directory = init_store(directory)
        remove_orphans(self.directory)
        self.max_records = max_records
        self.sample_rate = sample_rate
        self.shard_records = max(1, min(shard_records, max_records))
        self.max_buffer_seconds = max_buffer_seconds
        self._rng = np.random.default_rng(seed)
        self._writer = os.urandom(4).hex()  # one id per recorder: several workers share a store
        self._lock = threading.Lock()  # guards the buffer and the RNG
        self._write_lock = threading.Lock()  # one shard write (and trim) at a time
        self._images: list[np.ndarray] = []
        self._records: list[dict[str, Any]] = []
        self._since: float | None = None
        self._last_ns = 0
        atexit.register(self.flush)  # a partial buffer still reaches the disk at exit

    @classmethod
    def from_config(cls, config: RequestLogConfig) -> RequestLog | None:
        """A recorder for ``config``, or ``None`` when recording is off."""
        if not config.enabled:
            return None
        return cls(
            config.directory,
            config.max_records,
            config.sample_rate,
            config.seed,
            config.shard_records,
            config.max_buffer_seconds,
        )

    def record(self, images: np.ndarray, predictions: list[dict[str, Any]]) -> None:
        """Keep a sample of these images and their predictions.

        Args:
            images: uint8 ``[N, H, W, C]`` (or ``[N, H, W]``), as the model saw them.
            predictions: one JSON-able answer per image.

        Raises:
            ValueError: images that are not uint8 ``[N, H, W(, C)]``, or a count mismatch.
        """
        arr = np.asarray(images)
        if arr.ndim == 3:
            arr = arr[..., None]
        if arr.dtype != np.uint8 or arr.ndim != 4:
            raise ValueError(
                f"request log: images must be uint8 [N, H, W, C], got {arr.dtype} {list(arr.shape)}"
            )
        if len(arr) != len(predictions):
            raise ValueError(f"request log: {len(arr)} images but {len(predictions)} predictions")
        now = time.time()
        ready: list[tuple[np.ndarray, list[dict[str, Any]]]] = []
        with self._lock:
            keep = np.flatnonzero(self._rng.random(len(arr)) < self.sample_rate)
            for i in keep:
                if self._images and self._images[0].shape != arr.shape[1:]:
                    ready.append(self._take())  # one image shape per shard
                if not self._images:
                    self._since = now
                self._images.append(arr[i].copy())
                self._records.append({"time": now, "prediction": predictions[i]})
                if len(self._images) >= self.shard_records:
                    ready.append(self._take())
            if self._images and self._since is not None:
                if now - self._since >= self.max_buffer_seconds:
                    ready.append(self._take())
        for shard_images, shard_records in ready:
            self._write(shard_images, shard_records)

    def flush(self) -> None:
        """Write whatever is buffered (also runs at interpreter exit)."""
        with self._lock:
            ready = self._take() if self._images else None
        if ready is not None:
            self._write(*ready)

    close = flush

    def stored_records(self) -> int:
        """Images on disk now (all writers)."""
        return sum(s.count for s in list_shards(self.directory))

    def _take(self) -> tuple[np.ndarray, list[dict[str, Any]]]:
        images, records = np.stack(self._images), self._records
        self._images, self._records, self._since = [], [], None
        return images, records

    def _write(self, images: np.ndarray, records: list[dict[str, Any]]) -> None:
        # the thread lock orders this process's writers; the file lock the service's workers,
        # which share the store: trimming and writing is one step, so the bound holds for all
        with self._write_lock, open(self.directory / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # make room first, so the store never holds more than max_records
            shards = list_shards(self.directory)
            total = sum(s.count for s in shards)
            for shard in shards:
                if total + len(images) <= self.max_records:
                    break
                delete_shard(shard)
                total -= shard.count
            # strictly increasing names even within one clock tick
            self._last_ns = max(time.time_ns(), self._last_ns + 1)
            write_shard(self.directory, images, records, self._writer, self._last_ns)


def read_request_log(directory: str | Path) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Every stored record, oldest first: ``(uint8 [N, H, W, C] images, records)``.

    Each record is ``{"time": unix seconds, "prediction": the service's answer}``.

    Raises:
        models.monitoring.request_store.RequestStoreError: not a request log, empty, or damaged.
    """
    return read_store(directory)
