"""The request log: bounded, sampled, atomic shards, read back without pickle."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from models.monitoring.request_store import RequestStoreError, list_shards, read_store
from serving.request_log import RequestLog, RequestLogConfig, read_request_log


def batch(n: int, start: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Images whose first pixel is their running number (mod 256), with matching answers."""
    images = np.zeros((n, 28, 28, 1), np.uint8)
    ids = np.arange(start, start + n)
    images[:, 0, 0, 0] = ids % 256
    return images, [{"leaf": "Bag", "id": int(i)} for i in ids]


def test_round_trip_keeps_images_predictions_and_order(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "log", max_records=100, shard_records=8)
    for start in range(0, 30, 6):
        log.record(*batch(6, start))
    log.flush()
    images, records = read_request_log(tmp_path / "log")
    assert images.shape == (30, 28, 28, 1) and images.dtype == np.uint8
    assert [r["prediction"]["id"] for r in records] == list(range(30))
    np.testing.assert_array_equal(images[:, 0, 0, 0], np.arange(30))
    assert all(isinstance(r["time"], float) for r in records)


def test_never_holds_more_than_max_records_and_keeps_the_newest(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, max_records=50, shard_records=16)
    for start in range(0, 400, 7):
        log.record(*batch(7, start))
        assert log.stored_records() <= 50
    log.flush()
    assert log.stored_records() <= 50
    images, records = read_request_log(tmp_path)
    ids = [r["prediction"]["id"] for r in records]
    assert ids == sorted(ids) and ids[-1] == 399 + 6  # the most recent traffic
    assert len(ids) >= 50 - 16  # at most one shard's worth below the bound
    np.testing.assert_array_equal(images[:, 0, 0, 0], np.asarray(ids) % 256)


def test_sample_rate_keeps_about_that_share(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, max_records=10_000, sample_rate=0.25, seed=3)
    log.record(*batch(2000))
    log.flush()
    kept = log.stored_records()
    assert 400 < kept < 600
    again = RequestLog(tmp_path / "again", max_records=10_000, sample_rate=0.25, seed=3)
    again.record(*batch(2000))
    again.flush()
    assert again.stored_records() == kept


def test_concurrent_writers_stay_bounded_and_lose_nothing_below_the_bound(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, max_records=10_000, shard_records=32)

    def worker(k: int) -> None:
        for j in range(20):
            log.record(*batch(5, start=k * 1000 + j * 5))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.flush()
    _, records = read_request_log(tmp_path)
    ids = sorted(r["prediction"]["id"] for r in records)
    assert ids == sorted(k * 1000 + i for k in range(4) for i in range(100))


def test_shards_are_plain_npz_and_jsonl_read_without_pickle(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, max_records=100, shard_records=4)
    log.record(*batch(4))
    (shard,) = list_shards(tmp_path)
    assert shard.count == 4 and shard.jsonl.exists()
    with np.load(shard.npz, allow_pickle=False) as npz:
        assert npz.files == ["images"]
    # a shard holding an object array (which only pickle can load) is refused, not unpickled
    np.savez(shard.npz, images=np.array([{"x": 1}] * 4, dtype=object))
    with pytest.raises(RequestStoreError, match="damaged request-log shard"):
        read_store(tmp_path)


def test_a_half_written_shard_is_not_read(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, max_records=100, shard_records=4)
    log.record(*batch(4))
    # a writer that died between its two renames leaves records without images
    (tmp_path / "shard-00000000000000000001-deadbeef-4.jsonl").write_text('{"a": 1}\n' * 4)
    images, records = read_request_log(tmp_path)
    assert len(images) == len(records) == 4


def test_bad_input_and_empty_or_foreign_directories(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "log", max_records=10)
    with pytest.raises(ValueError, match="3 images but 2 predictions"):
        log.record(np.zeros((3, 28, 28, 1), np.uint8), [{}, {}])
    with pytest.raises(ValueError, match="uint8"):
        log.record(np.zeros((1, 28, 28, 1), np.float32), [{}])
    with pytest.raises(RequestStoreError, match="holds no records yet"):
        read_request_log(tmp_path / "log")
    with pytest.raises(RequestStoreError, match="is not a request log"):
        read_request_log(tmp_path)


def test_config_is_off_by_default_and_strict() -> None:
    assert RequestLogConfig().enabled is False
    assert RequestLog.from_config(RequestLogConfig()) is None
    with pytest.raises(ValueError, match="Extra inputs"):
        RequestLogConfig(enable=True)
    with pytest.raises(ValueError):
        RequestLogConfig(sample_rate=0)


def _worker_process(directory: str, seed: int) -> None:
    log = RequestLog(directory, max_records=60, shard_records=16, seed=seed)
    for start in range(0, 300, 5):
        log.record(*batch(5, start))
        if log.stored_records() > 60:
            raise SystemExit(f"store over its bound: {log.stored_records()}")
    log.flush()


def test_service_workers_in_several_processes_share_one_bound(tmp_path: Path) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker_process, args=(str(tmp_path), k)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    images, records = read_request_log(tmp_path)
    assert 0 < len(images) == len(records) <= 60
