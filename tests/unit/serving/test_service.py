"""The service class called directly: answers, refusals, the array endpoint, the request log."""

from __future__ import annotations

import gc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from threadpoolctl import threadpool_info, threadpool_limits

from models.tree.hierarchy import load_builtin_tree
from tests.toy_models import train_tiny_classifier


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = load_builtin_tree("fashion_mnist")
    rng = np.random.default_rng(0)
    labels = np.arange(100) % 10
    images = np.clip(
        40 + 15 * labels[:, None, None, None] + rng.integers(0, 60, (100, 28, 28, 1)), 0, 255
    ).astype(np.uint8)
    model = train_tiny_classifier(tree, images, labels, epochs=2, info={"dataset_hash": "toy"})
    model.temperatures = [1.2, 1.1, 0.9]
    path = tmp_path_factory.mktemp("model")
    model.save(path)
    return path


@pytest.fixture
def service(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HIERGAN_MODEL_DIR", str(tiny_model_dir))
    from serving.service import HierganService

    thresholds = gc.get_threshold()
    with threadpool_limits(limits=None):  # restores the BLAS threads the service caps
        yield HierganService()
    gc.set_threshold(*thresholds)  # the worker's collector setting, not the test session's


def test_service_caps_blas_threads_as_torch_threads(service) -> None:
    """A worker's NumPy products (the guard's) may not start a BLAS thread per core."""
    import torch

    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas, "NumPy's BLAS is not visible to threadpoolctl"
    assert {pool["num_threads"] for pool in blas} == {torch.get_num_threads()}


def test_service_answers_path_leaf_and_top_k(service, tmp_path: Path) -> None:
    files = []
    for i, (size, mode) in enumerate([((28, 28), "L"), ((500, 300), "RGB")]):
        path = tmp_path / f"img{i}.png"
        Image.new(mode, size, 128).save(path)
        files.append(path)
    ctx = SimpleNamespace(response=SimpleNamespace(status_code=200))
    answer = service.classify(files, ctx=ctx, top_k=5)
    assert ctx.response.status_code == 200
    predictions = answer["predictions"]
    assert [p["input"] for p in predictions] == ["images[0]", "images[1]"]
    tree = service.predictor.tree
    for p in predictions:
        assert [step["level"] for step in p["path"]] == list(tree.level_names)
        assert p["path"][-1]["label"] == p["leaf"] == tree.leaves[p["leaf_index"]]
        # coarser levels are at least as likely as the leaf under them
        probs = [step["probability"] for step in p["path"]]
        assert all(a >= b - 1e-6 for a, b in zip(probs, probs[1:], strict=False))
        assert len(p["top_k"]) == 5 and p["top_k"][0]["label"] == p["leaf"]
        assert sum(t["probability"] for t in p["top_k"]) <= 1 + 1e-5


def test_service_refuses_bad_files_with_400(service, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    ctx = SimpleNamespace(response=SimpleNamespace(status_code=200))
    answer = service.classify([bad], ctx=ctx)
    assert ctx.response.status_code == 400 and answer["error"].startswith("images[0]: ")
    ctx.response.status_code = 200
    assert "top_k must be between 1 and" in service.classify([bad], ctx=ctx, top_k=0)["error"]


def test_array_endpoint_matches_file_endpoint(service, tmp_path: Path) -> None:
    array = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(array).save(path)
    ctx = SimpleNamespace(response=SimpleNamespace(status_code=200))
    from_file = service.classify([path], ctx=ctx)["predictions"][0]
    from_array = service.classify_array(array[None, :, :, None])[0]
    assert from_file["top_k"] == from_array["top_k"]
    assert service.model_info()["levels"] == ["category", "group", "item"]


def test_request_log_records_what_the_model_saw(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIERGAN_MODEL_DIR", str(tiny_model_dir))
    import serving.service as service_module
    from serving.request_log import RequestLogConfig, read_request_log

    config = RequestLogConfig(enabled=True, directory=str(tmp_path / "log"), shard_records=1)
    monkeypatch.setattr(service_module.CONFIG, "request_log", config)
    service = service_module.HierganService()
    array = np.random.default_rng(2).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    answers = service.classify_array(array)
    service.request_log.flush()
    images, records = read_request_log(tmp_path / "log")
    np.testing.assert_array_equal(images, array)
    assert [r["prediction"]["leaf"] for r in records] == [a["leaf"] for a in answers]


def test_the_worker_sets_the_collector_threshold_from_its_config(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIERGAN_MODEL_DIR", str(tiny_model_dir))
    import serving.service as service_module
    from serving.config import ServiceConfig, load_service_config

    thresholds = gc.get_threshold()
    monkeypatch.setattr(service_module.CONFIG, "gc_gen0_threshold", 12345)
    try:
        service_module.HierganService()
        assert gc.get_threshold() == (12345, *thresholds[1:])  # older generations as they were
    finally:
        gc.set_threshold(*thresholds)
    assert ServiceConfig().gc_gen0_threshold == 700  # Python's own unless a config says so
    assert load_service_config().gc_gen0_threshold > 813  # one JSON image's lists fit under it
    with pytest.raises(ValueError, match="gc_gen0_threshold"):
        ServiceConfig(gc_gen0_threshold=0)


def test_classify_routes_skip_tracing_unless_asked() -> None:
    from serving.config import ServiceConfig
    from serving.service import CLASSIFY_ROUTES, tracing_settings

    assert tracing_settings(ServiceConfig()) == {"excluded_urls": CLASSIFY_ROUTES}
    assert set(CLASSIFY_ROUTES) == {"/classify", "/classify_array"}
    assert tracing_settings(ServiceConfig(trace_classify=True)) == {}
