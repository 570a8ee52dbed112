"""The service's OOD verdicts: flag, reject (422 naming the image), and models without a guard."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from models.classifier.io import TrainedClassifier
from serving.ood import GuardMissingError, OodPolicy, RejectedArrayStatus
from tests.toy_models import guarded_square_classifier, square_images


@pytest.fixture(scope="module")
def guarded_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    classifier, _, _ = guarded_square_classifier()
    path = tmp_path_factory.mktemp("guarded")
    classifier.save(path)
    return path


@pytest.fixture(scope="module")
def plain_dir(guarded_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same classifier saved as an older artifact (no OOD statistics)."""
    c = TrainedClassifier.load(guarded_dir)
    path = tmp_path_factory.mktemp("plain")
    TrainedClassifier(c.architecture, c.config, c.tree, c.state, c.calibration).save(path)
    return path


def _service(model_dir: Path, action: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HIERGAN_MODEL_DIR", str(model_dir))
    import serving.service as service_module

    monkeypatch.setattr(service_module.CONFIG, "ood", OodPolicy(action=action))
    return service_module.HierganService()


def _files(tmp_path: Path) -> list[Path]:
    """A toy garment, uniform noise, another toy garment."""
    squares, _ = square_images(2, seed=9)
    noise = np.random.default_rng(4).integers(0, 256, (28, 28), dtype=np.uint8)
    paths = []
    for i, image in enumerate([squares[0, :, :, 0], noise, squares[1, :, :, 0]]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def _ctx() -> SimpleNamespace:
    return SimpleNamespace(response=SimpleNamespace(status_code=200))


def test_flag_marks_unusual_images_and_answers_all(guarded_dir, tmp_path, monkeypatch) -> None:
    service = _service(guarded_dir, "flag", monkeypatch)
    ctx = _ctx()
    predictions = service.classify(_files(tmp_path), ctx=ctx)["predictions"]
    assert ctx.response.status_code == 200
    assert [p["ood"]["is_ood"] for p in predictions] == [False, True, False]
    assert all("leaf" in p for p in predictions)
    assert predictions[1]["ood"]["score"] > predictions[1]["ood"]["threshold"]
    info = service.model_info()["ood"]
    assert info["action"] == "flag" and info["scorer"] == "knn_complexity"
    assert info["threshold"] == service.predictor.threshold  # the served runtime's
    assert info["float32_threshold"] == service.predictor.guard.threshold
    assert info["parts"] == ["knn", "complexity"]
    assert info["pixels"] == {"density": "diagonal", "compressor": "zlib"}  # OodConfig's defaults


def test_reject_answers_422_naming_the_image_and_keeps_the_others(
    guarded_dir, tmp_path, monkeypatch
) -> None:
    service = _service(guarded_dir, "reject", monkeypatch)
    ctx = _ctx()
    answer = service.classify(_files(tmp_path), ctx=ctx)
    assert ctx.response.status_code == 422
    assert answer["error"].startswith("images[1]: out of distribution (score ")
    assert "> threshold" in answer["error"]
    first, rejected, last = answer["predictions"]
    assert "leaf" in first and "leaf" in last and "leaf" not in rejected
    assert rejected["input"] == "images[1]" and rejected["ood"]["is_ood"]
    # the batched route marks the image; the middleware below names it and sets the 422
    arrays = service.classify_array(
        np.stack([np.asarray(Image.open(p))[..., None] for p in _files(tmp_path)])
    )
    assert arrays[1]["error"].startswith("out of distribution") and "leaf" in arrays[0]


def test_an_old_model_is_served_with_ood_null_and_a_warning(plain_dir, monkeypatch, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        service = _service(plain_dir, "flag", monkeypatch)
    assert "carries no OOD statistics" in caplog.text
    answers = service.classify_array(square_images(2)[0])
    assert [a["ood"] for a in answers] == [None, None]
    assert service.model_info()["ood"] is None


def test_reject_with_an_old_model_refuses_to_start(plain_dir, monkeypatch) -> None:
    with pytest.raises(GuardMissingError, match="carries no OOD statistics.*ood.action: flag"):
        _service(plain_dir, "reject", monkeypatch)


async def _through(middleware_app, status: int, body: bytes) -> tuple[int, bytes]:
    async def app(scope, receive, send):
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "path": "/classify_array", "method": "POST"}
    await middleware_app(app)(scope, receive, send)
    start, *bodies = sent
    body_out = b"".join(m.get("body", b"") for m in bodies)
    declared = dict(start["headers"])[b"content-length"]
    assert int(declared) == len(body_out)
    return start["status"], body_out


def test_the_batched_route_gets_422_and_image_names() -> None:
    rejected = [
        {"leaf": "Bag"},
        {"error": "out of distribution (score 9 > threshold 3)", "ood": {}},
    ]
    status, body = asyncio.run(_through(RejectedArrayStatus, 200, json.dumps(rejected).encode()))
    answer = json.loads(body)
    assert status == 422
    assert answer["error"] == "images[1]: out of distribution (score 9 > threshold 3)"
    assert answer["predictions"][0] == {"leaf": "Bag"}
    fine = json.dumps([{"leaf": "Bag"}]).encode()
    assert asyncio.run(_through(RejectedArrayStatus, 200, fine)) == (200, fine)
    error = json.dumps({"error": "images: bad shape"}).encode()
    assert asyncio.run(_through(RejectedArrayStatus, 400, error)) == (400, error)


def test_int8_service_flags_the_same_images(guarded_dir, tmp_path, monkeypatch) -> None:
    import serving.service as service_module

    monkeypatch.setattr(service_module.CONFIG, "quantization", "dynamic-int8")
    service = _service(guarded_dir, "flag", monkeypatch)
    assert service.model_info()["quantization"] == "dynamic-int8"
    predictions = service.classify(_files(tmp_path), ctx=_ctx())["predictions"]
    assert [p["ood"]["is_ood"] for p in predictions] == [False, True, False]


def test_static_int8_answers_an_image_the_same_alone_or_batched(
    guarded_dir, tmp_path, monkeypatch
) -> None:
    from models.calibration.activation_ranges import with_activation_ranges

    ranged = with_activation_ranges(
        TrainedClassifier.load(guarded_dir), square_images(300, seed=1)[0]
    )
    ranged.save(tmp_path / "ranged")
    import serving.service as service_module

    monkeypatch.setattr(service_module.CONFIG, "quantization", "static-int8")
    service = _service(tmp_path / "ranged", "flag", monkeypatch)
    assert service.model_info()["quantization"] == "static-int8"
    images, _ = square_images(6, seed=12)
    noise = np.random.default_rng(5).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    batched = service.answer(np.concatenate([noise[:2], images, noise[2:]]), top_k=3)[2:8]
    alone = [service.answer(image[None], top_k=3)[0] for image in images]
    # the same labels everywhere; numbers to float32 rounding (the pixel likelihood's product
    # sums in another order for a batch, ~1e-4 of a score; dynamic-int8 moves scores ~0.1)
    assert _labels(batched) == _labels(alone)
    assert np.allclose(_numbers(batched), _numbers(alone), rtol=0, atol=2e-3)


def _labels(answers: object) -> list[object]:
    """Every string and bool of nested answers, in order."""
    if isinstance(answers, dict):
        return [v for value in answers.values() for v in _labels(value)]
    if isinstance(answers, list):
        return [v for value in answers for v in _labels(value)]
    return [answers] if isinstance(answers, str | bool) else []


def _numbers(answers: object) -> list[float]:
    """Every number (not bool) of nested answers, in order."""
    if isinstance(answers, dict):
        return [v for value in answers.values() for v in _numbers(value)]
    if isinstance(answers, list):
        return [v for value in answers for v in _numbers(value)]
    is_number = isinstance(answers, int | float) and not isinstance(answers, bool)
    return [float(answers)] if is_number else []
