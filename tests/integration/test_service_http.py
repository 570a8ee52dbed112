"""The service over HTTP: `bentoml serve` started here, a round trip, and malformed requests."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import requests
import yaml
from PIL import Image

from models.tree.hierarchy import load_builtin_tree
from tests.conftest import REPO
from tests.servers import free_port, wait_until_ready
from tests.toy_models import train_tiny_classifier

pytestmark = pytest.mark.integration

LIMITS = {
    "max_request_bytes": 2_000_000,
    "max_file_bytes": 300_000,
    "max_pixels": 1_000_000,
    "max_images": 4,
    "max_top_k": 10,
}


def _png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("serve")
    tree = load_builtin_tree("fashion_mnist")
    rng = np.random.default_rng(0)
    labels = np.arange(100) % 10
    images = rng.integers(0, 256, (100, 28, 28, 1), dtype=np.uint8)
    train_tiny_classifier(tree, images, labels, epochs=1).save(tmp / "model")
    config = yaml.safe_load((REPO / "serving/service.yaml").read_text())
    config["limits"] = LIMITS
    (tmp / "service.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    env = {
        **os.environ,
        "HIERGAN_MODEL_DIR": str(tmp / "model"),
        "HIERGAN_SERVICE_CONFIG": str(tmp / "service.yaml"),
        "BENTOML_HOME": str(tmp / "bentoml"),
    }
    log = open(tmp / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", "serving.service:HierganService"]
        + ["--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/readyz", proc, tmp / "server.log")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert proc.returncode is not None


def test_round_trip_files_and_arrays(server: str) -> None:
    files = [
        ("images", ("shirt.png", _png(np.full((28, 28), 120, np.uint8)), "image/png")),
        ("images", ("photo.jpg", _png(np.full((200, 150, 3), 60, np.uint8), "JPEG"), "image/jpeg")),
        ("images", ("x.webp", _png(np.full((64, 64, 3), 200, np.uint8), "WEBP"), "image/webp")),
    ]
    answer = requests.post(f"{server}/classify", files=files, data={"top_k": "4"}, timeout=30)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert len(predictions) == 3
    assert all(len(p["top_k"]) == 4 and len(p["path"]) == 3 for p in predictions)
    arrays = np.zeros((2, 28, 28, 1), np.uint8).tolist()
    batch = requests.post(f"{server}/classify_array", json={"images": arrays}, timeout=30)
    assert batch.status_code == 200, batch.text
    assert (
        len(batch.json()) == 2 and batch.json()[0]["path"][-1]["label"] == batch.json()[0]["leaf"]
    )
    as_npy = requests.post(
        f"{server}/classify_array",
        data=_npy(np.zeros((2, 28, 28), np.uint8)),
        headers=NPY,
        timeout=30,
    )
    assert as_npy.status_code == 200 and as_npy.json() == batch.json()
    info = requests.post(f"{server}/model_info", timeout=30).json()
    assert info["limits"]["max_images"] == 4 and info["model"].startswith("dir:")


def _corpus() -> list[tuple[str, str, dict]]:
    """(name, route, requests kwargs) of malformed requests."""
    noise = np.random.default_rng(0).integers(0, 256, (600, 600), dtype=np.uint8)  # ~360 kB PNG
    ok_png = _png(np.zeros((28, 28), np.uint8))
    image = {"images": ("a.png", ok_png, "image/png")}
    return [
        ("truncated png", "/classify", {"files": {"images": ("t.png", _png(noise)[:300])}}),
        ("random bytes", "/classify", {"files": {"images": ("r.png", os.urandom(2000))}}),
        ("empty file", "/classify", {"files": {"images": ("e.png", b"")}}),
        ("text as image", "/classify", {"files": {"images": ("t.txt", b"hello", "text/plain")}}),
        ("no body", "/classify", {}),
        ("wrong content type", "/classify", {"data": b"abc", "headers": {"content-type": "x/y"}}),
        ("json without files", "/classify", {"json": {"images": []}}),
        ("wrong field name", "/classify", {"files": {"picture": ("a.png", ok_png)}}),
        ("images as text", "/classify", {"files": {"images": (None, b"hello")}}),
        ("top_k as a file", "/classify", {"files": {**image, "top_k": ("k.bin", b"\xff\xfe")}}),
        ("too many files", "/classify", {"files": [("images", ("a.png", ok_png))] * 5}),
        (
            "too many pixels",
            "/classify",
            {"files": {"images": ("b.png", _png(np.zeros((1100, 1000), np.uint8)))}},
        ),
        ("file too large", "/classify", {"files": {"images": ("n.png", _png(noise))}}),
        ("body too large", "/classify", {"files": {"images": ("z.bin", os.urandom(2_100_000))}}),
        (
            "chunked body too large",
            "/classify",
            {"data": (b"x" * 100_000 for _ in range(25)), "headers": {"content-type": "x/y"}},
        ),
        ("top_k zero", "/classify", {"files": image, "data": {"top_k": "0"}}),
        ("top_k too big", "/classify", {"files": image, "data": {"top_k": "1000"}}),
        ("top_k not a number", "/classify", {"files": image, "data": {"top_k": "many"}}),
        (
            "array wrong shape",
            "/classify_array",
            {"json": {"images": np.zeros((1, 28, 27)).tolist()}},
        ),
        ("array ragged", "/classify_array", {"json": {"images": [[1, 2], [3]]}}),
        (
            "array out of range",
            "/classify_array",
            {"json": {"images": np.full((1, 28, 28), 300).tolist()}},
        ),
        (
            "array negative",
            "/classify_array",
            {"json": {"images": np.full((1, 28, 28), -1).tolist()}},
        ),
        (
            "array fractional",
            "/classify_array",
            {"json": {"images": np.full((1, 28, 28), 0.5).tolist()}},
        ),
        ("array strings", "/classify_array", {"json": {"images": [["a"] * 28] * 28}}),
        ("array empty", "/classify_array", {"json": {"images": []}}),
        ("array too many", "/classify_array", {"json": {"images": np.zeros((5, 28, 28)).tolist()}}),
        ("array missing field", "/classify_array", {"json": {"pixels": [1]}}),
        (
            "array invalid json",
            "/classify_array",
            {"data": b'{"images": [', "headers": {"content-type": "application/json"}},
        ),
        (
            "array not json",
            "/classify_array",
            {"data": b"\x00\x01", "headers": {"content-type": "application/json"}},
        ),
        (
            "npy truncated",
            "/classify_array",
            {"data": _npy(np.zeros((2, 28, 28), np.uint8))[:-9], "headers": NPY},
        ),
        ("npy pickled objects", "/classify_array", {"data": _npy(np.array([{}])), "headers": NPY}),
        ("npy not npy", "/classify_array", {"data": b"\x00\x01", "headers": NPY}),
        ("unknown route", "/predict", {"json": {}}),
    ]


NPY = {"content-type": "application/x-npy"}


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_malformed_requests_get_4xx_json_and_server_stays_healthy(server: str) -> None:
    corpus = _corpus()
    statuses = {}
    for name, route, kwargs in corpus:
        answer = requests.post(f"{server}{route}", timeout=30, **kwargs)
        statuses[name] = answer.status_code
        assert 400 <= answer.status_code < 500, f"{name}: {answer.status_code} {answer.text[:300]}"
        if route != "/predict":
            body = answer.json()
            assert isinstance(body, dict) and body.get("error"), f"{name}: {answer.text[:300]}"
    assert requests.get(f"{server}/classify", timeout=30).status_code == 405
    print(f"\n{len(corpus) + 1} malformed requests, statuses: {statuses}")
    for probe in ("/livez", "/readyz", "/healthz"):
        assert requests.get(f"{server}{probe}", timeout=10).status_code == 200
    ok = requests.post(
        f"{server}/classify",
        files={"images": ("a.png", _png(np.zeros((28, 28), np.uint8)))},
        timeout=30,
    )
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1
