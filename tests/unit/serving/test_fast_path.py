"""The fast request path, driven at the ASGI level: same answers, BentoML's for anything odd."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving.fast_path import SERVING, FastPath, GreedyBatcher
from tests.unit.serving.test_service import tiny_model_dir  # noqa: F401 - a fixture


class Fallback:
    """Stands for BentoML's app: records what reached it and answers 418."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        message = await receive()
        self.bodies.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def _call(app, path: str, body: bytes, content_type: bytes) -> tuple[int, bytes]:  # noqa: ANN001
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", content_type)],
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def _form(files: list[bytes], top_k: str | None = None) -> tuple[bytes, bytes]:
    boundary = "xyzzy"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="f{i}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, data in enumerate(files)
    ]
    if top_k is not None:
        field = f'Content-Disposition: form-data; name="top_k"\r\n\r\n{top_k}\r\n'
        parts.append(f"--{boundary}\r\n{field}".encode())
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}".encode()


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def service(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    monkeypatch.setenv("HIERGAN_MODEL_DIR", str(tiny_model_dir))
    from serving.service import HierganService

    yield HierganService()
    SERVING.clear()


def test_well_formed_requests_get_the_services_answers(service) -> None:
    fallback = Fallback()
    app = FastPath(fallback)
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    status, body = _call(
        app,
        "/classify_array",
        json.dumps({"images": images.tolist()}).encode(),
        b"application/json",
    )
    assert status == 200 and not fallback.bodies
    assert json.loads(body) == json.loads(json.dumps(service.classify_array(images)))
    # one image as [H, W] (the missing axes are added, as BentoML's path does)
    status, body = _call(
        app,
        "/classify_array",
        json.dumps({"images": images[0, :, :, 0].tolist()}).encode(),
        b"application/json",
    )
    assert status == 200 and len(json.loads(body)) == 1
    form, content_type = _form([_png(images[0, :, :, 0]), _png(images[1, :, :, 0])], top_k="5")
    status, body = _call(app, "/classify", form, content_type)
    predictions = json.loads(body)["predictions"]
    assert status == 200 and [p["input"] for p in predictions] == ["images[0]", "images[1]"]
    expected = service.classify_array(images[:2])
    assert [p["leaf"] for p in predictions] == [a["leaf"] for a in expected]
    assert all(len(p["top_k"]) == 5 for p in predictions)


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/classify_array", b'{"images": [', b"application/json"),
        ("/classify_array", b'{"pixels": [1]}', b"application/json"),
        (
            "/classify_array",
            json.dumps({"images": np.zeros((1, 28, 27)).tolist()}).encode(),
            b"application/json",
        ),
        (
            "/classify_array",
            json.dumps({"images": [[300] * 28] * 28}).encode(),
            b"application/json",
        ),
        (
            "/classify_array",
            json.dumps({"images": np.zeros((65, 28, 28), np.uint8).tolist()}).encode(),
            b"application/json",
        ),
        ("/classify_array", b"\x00\x01", b"application/octet-stream"),
        ("/classify", b"abc", b"x/y"),
        ("/classify", *_form([b"\x89PNG\r\n\x1a\n broken"])),
        ("/classify", *_form([_png(np.zeros((28, 28), np.uint8))], top_k="0")),
        ("/classify", *_form([_png(np.zeros((28, 28), np.uint8))], top_k="many")),
        ("/classify", *_form([_png(np.zeros((28, 28), np.uint8))] * 65)),
    ],
)
def test_anything_odd_goes_to_bentoml_with_its_body(service, path, body, content_type) -> None:  # noqa: ANN001
    fallback = Fallback()
    status, _ = _call(FastPath(fallback), path, body, content_type)
    assert status == 418 and fallback.bodies == [body]


def test_disabled_or_before_the_model_is_loaded_everything_goes_to_bentoml() -> None:
    fallback = Fallback()
    body = json.dumps({"images": np.zeros((1, 28, 28)).tolist()}).encode()
    assert _call(FastPath(fallback), "/classify_array", body, b"application/json")[0] == 418


def test_greedy_batcher_batches_queued_requests_and_keeps_each_top_k() -> None:
    calls: list[tuple[int, int]] = []

    def answer(images: np.ndarray, top_k: int) -> list[dict]:
        calls.append((len(images), top_k))
        return [{"v": int(x[0, 0, 0]), "top_k": list(range(top_k))} for x in images]

    batcher = GreedyBatcher(answer, max_batch_size=4)

    async def run() -> list[list[dict]]:
        jobs = [
            batcher.submit(np.full((n, 1, 1, 1), i, np.uint8), k)
            for i, (n, k) in enumerate([(1, 3), (2, 5), (1, 2), (3, 1)])
        ]
        return await asyncio.gather(*jobs)

    results = asyncio.run(run())
    assert calls == [(4, 5), (3, 1)]  # everything queued, up to the cap (a request is not split)
    assert [[a["v"] for a in r] for r in results] == [[0], [1, 1], [2], [3, 3, 3]]
    assert [len(r[0]["top_k"]) for r in results] == [3, 5, 2, 1]


def test_workers_times_threads_never_exceed_the_cores() -> None:
    from serving.config import ServiceConfig

    assert ServiceConfig(workers=1).threads_per_worker(cores=2) == 2
    assert ServiceConfig(workers=2).threads_per_worker(cores=2) == 1
    assert ServiceConfig(workers=3).threads_per_worker(cores=2) == 1  # at least one
    assert ServiceConfig(workers=2, torch_threads=4).threads_per_worker(cores=8) == 4
    assert ServiceConfig(workers=2, torch_threads=4).threads_per_worker(cores=4) == 2


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


@pytest.mark.parametrize("enabled", [True, False])
def test_npy_bodies_get_the_same_answers_as_json(service, enabled: bool) -> None:  # noqa: ANN001
    fallback = Fallback()
    images = np.random.default_rng(1).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    app = FastPath(fallback, enabled=enabled)
    status, body = _call(app, "/classify_array", _npy(images), b"application/x-npy")
    assert status == 200 and not fallback.bodies  # answered here even with the fast path off
    assert json.loads(body) == json.loads(json.dumps(service.classify_array(images)))
    # [N, H, W] floats holding whole grey levels, as JSON would take them
    status, body = _call(
        app, "/classify_array", _npy(images[..., 0].astype(np.float32)), b"application/x-npy"
    )
    assert status == 200 and len(json.loads(body)) == 4


def _header_only(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "|u1", "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not an array", "body is not a .npy array"),
        (_npy(np.zeros((2, 28, 28), np.uint8))[:-7], "the body holds 1561 bytes"),
        (_header_only((10**10, 28, 28)), "10000000000 images in one call, over the limit of 64"),
        (_header_only((3, 10**9)), "header says shape [3, 1000000000]"),
        (_npy(np.array([{"a": 1}], dtype=object)), "holds Python objects"),
        (_npy(np.zeros((2, 28, 27), np.uint8)), "expected shape [N, 28, 28, 1]"),
        (_npy(np.full((1, 28, 28), 300.0)), "pixel values must be in [0, 255]"),
        (b"\x93NUMPY\x01\x00\x10\x00{'descr': '<u1',", "bad .npy header"),
    ],
)
def test_malformed_npy_bodies_are_refused_naming_the_fault(service, body, message) -> None:  # noqa: ANN001
    fallback = Fallback()
    status, answer = _call(FastPath(fallback), "/classify_array", body, b"application/x-npy")
    assert status == 400 and not fallback.bodies
    assert message in json.loads(answer)["error"]


@pytest.mark.parametrize(
    ("parallel", "max_batch_size", "expected_peak"),
    [(2, 8, 2), (1, 8, 1), (2, 64, 1)],  # the last: too little waits for a second batch
)
def test_greedy_batcher_runs_a_second_batch_beside_the_first_when_enough_waits(
    parallel: int, max_batch_size: int, expected_peak: int
) -> None:
    lock, in_flight, peak = threading.Lock(), [0], [0]

    def answer(images: np.ndarray, top_k: int) -> list[dict]:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        threading.Event().wait(0.2)  # hold the batch while the others are submitted
        with lock:
            in_flight[0] -= 1
        return [{"v": int(x[0, 0, 0]), "top_k": []} for x in images]

    batcher = GreedyBatcher(answer, max_batch_size, parallel)

    async def run() -> list[list[dict]]:
        sizes = [1, 2, 2, 2, 2]
        jobs = [batcher.submit(np.full((n, 1, 1, 1), i, np.uint8), 3) for i, n in enumerate(sizes)]
        return await asyncio.gather(*jobs)

    results = asyncio.run(run())
    assert peak[0] == expected_peak
    assert [[a["v"] for a in r] for r in results] == [[0], [1, 1], [2, 2], [3, 3], [4, 4]]
    assert batcher.running == 0 and batcher.queued == 0 and not batcher.queue
