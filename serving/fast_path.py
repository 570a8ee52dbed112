"""A lean request path for the two classify routes, in front of BentoML's own handling.

Why not BentoML's path alone: profiled under 32 concurrent single-image clients on 2 cores
(py-spy, ``bench/serve_load.py``), BentoML spent ~2 ms of its event loop per ``/classify_array``
request, 46 % of it in pydantic turning the JSON list into an array and 13 % building the
response's JSON schema, and its adaptive batcher held a lone request for ~60 ms. This path parses
a well-formed request with numpy (:mod:`serving.json_body`; ``json`` for bodies that are not
plain) or starlette's multipart parser and PIL, checks it
with the same rules, batches greedily across requests (:class:`GreedyBatcher`) and answers with
the same ``HierganService._answer``. Anything it does not recognise as well-formed goes on,
body replayed, to BentoML's handler, so every error answer is still BentoML's and the service's
own (the 4xx messages that name what was wrong); BentoML's middlewares (concurrency limit,
metrics, tracing, access log) still wrap both paths.

``/classify_array`` also takes ``application/x-npy`` bodies (:mod:`serving.npy_body`): BentoML has
no such input, so they are always answered here, a malformed one with a 400 that names the fault.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.json_body import parse_json_images
from serving.limits import App, Message, Receive, Scope, Send, send_json_error
from serving.npy_body import NPY_CONTENT_TYPE, BadArrayBody, parse_npy_images

# The service instance answering requests, set by HierganService.__init__ in its worker.
SERVING: dict[str, Any] = {}

Answer = Callable[[np.ndarray, int], list[dict[str, Any]]]


@dataclass
class _Job:
    images: np.ndarray
    top_k: int
    future: asyncio.Future = field(repr=False)


class GreedyBatcher:
    """Requests queue while a batch runs; the next batch takes everything queued (up to a cap).

    A lone request runs at once (no waiting window); under load, batches grow with the queue.
    The model runs in worker threads, so the event loop keeps parsing requests meanwhile and
    torch's own threads do the arithmetic.

    Args:
        answer: ``(uint8 images [N, H, W, C], top_k) -> one answer per image``.
        max_batch_size: images per batch at most (a request is never split).
        parallel: batches in flight at once, each in its own thread (``batching.threads``);
            another starts only while a quarter of a batch of images waits.
    """

    def __init__(self, answer: Answer, max_batch_size: int, parallel: int = 1) -> None:
        self.answer = answer
        self.max_batch_size = max_batch_size
        self.queue: deque[_Job] = deque()
        self.parallel = parallel
        self.running = 0  # batches being drained
        self.queued = 0  # images waiting
        self.executor = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="hiergan-batch")

    async def submit(self, images: np.ndarray, top_k: int) -> list[dict[str, Any]]:
        """This request's answers, computed in a batch with whatever else is queued."""
        loop = asyncio.get_running_loop()
        job = _Job(images, top_k, loop.create_future())
        self.queue.append(job)
        self.queued += len(images)
        # another batch only for a queue worth a quarter of one: small requests keep forming
        # one large batch (cheaper per image) rather than two small ones
        if self.running == 0 or (
            self.running < self.parallel and self.queued >= max(1, self.max_batch_size // 4)
        ):
            self.running += 1
            loop.create_task(self._drain())
        return await job.future

    def _next_batch(self) -> list[_Job]:
        jobs = [self.queue.popleft()]
        size = len(jobs[0].images)
        while self.queue and size + len(self.queue[0].images) <= self.max_batch_size:
            job = self.queue.popleft()
            jobs.append(job)
            size += len(job.images)
        self.queued -= size
        return jobs

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.queue:
                jobs = self._next_batch()
                images = np.concatenate([j.images for j in jobs])
                top_k = max(j.top_k for j in jobs)
                try:
                    answers = await loop.run_in_executor(self.executor, self.answer, images, top_k)
                except Exception as err:  # noqa: BLE001 - handed to every waiting request
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(err)
                    continue
                start = 0
                for job in jobs:
                    mine = answers[start : start + len(job.images)]
                    start += len(job.images)
                    if job.top_k < top_k:
                        for a in mine:
                            a["top_k"] = a["top_k"][: job.top_k]
                    if not job.future.done():
                        job.future.set_result(mine)
        finally:
            self.running -= 1


class NotFast(Exception):
    """The request is not a plain well-formed one: BentoML's handler answers it."""


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client went away."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def parse_array_request(body: bytes, service: Any) -> np.ndarray:
    """``{"images": uint8-valued [N, H, W(, C)]}`` as checked uint8 ``[N, H, W, C]``, or NotFast.

    A plain body (whole numbers, a shape the model takes) is read without Python lists
    (:mod:`serving.json_body`); any other goes through ``json.loads`` and the same checks.
    """
    from models.classifier.prediction import InputShapeError

    images = parse_json_images(body, service.predictor.image_shape)
    if images is None:
        try:
            payload = json.loads(body)
        except ValueError:
            raise NotFast from None
        if not isinstance(payload, dict) or set(payload) != {"images"}:
            raise NotFast
        images = payload["images"]
    try:
        images = np.asarray(images)
        if images.ndim >= 1 and len(images) > service.limits.max_images:
            raise NotFast
        return service.predictor.check_images(images)
    except (InputShapeError, ValueError, TypeError):
        raise NotFast from None


async def parse_form_request(
    scope: Scope, body: bytes, service: Any
) -> tuple[np.ndarray, int, list[str]]:
    """Decoded images, top_k and input names of a well-formed ``/classify`` form, or NotFast."""
    from starlette.requests import Request

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    limits = service.limits
    try:
        form = await Request(scope, replay).form(max_files=limits.max_images, max_fields=2)
    except Exception:  # noqa: BLE001 - any parser complaint: BentoML's path says what it is
        raise NotFast from None
    try:
        return await _decoded_form(form, service)
    finally:
        await form.close()


async def _decoded_form(form: Any, service: Any) -> tuple[np.ndarray, int, list[str]]:
    from starlette.datastructures import UploadFile

    from models.data.images import ImageDecodeError, decode_image

    limits = service.limits
    files = form.getlist("images")
    k = form.getlist("top_k")
    if (
        not files
        or set(form.keys()) - {"images", "top_k"}
        or len(k) > 1
        or not all(isinstance(f, UploadFile) for f in files)
        or any(isinstance(v, UploadFile) for v in k)
    ):
        raise NotFast
    try:
        top_k = int(k[0]) if k else 3
    except ValueError:
        raise NotFast from None
    if not 1 <= top_k <= limits.max_top_k or len(files) > limits.max_images:
        raise NotFast
    size, _, channels = service.predictor.image_shape
    decoded = []
    for f in files:
        data = await f.read()
        if len(data) > limits.max_file_bytes:
            raise NotFast
        try:
            decoded.append(decode_image(data, size, channels, max_pixels=limits.max_pixels))
        except ImageDecodeError:
            raise NotFast from None
    return np.stack(decoded), top_k, [f"images[{i}]" for i in range(len(files))]


async def send_json(send: Send, payload: Any) -> None:
    """A 200 answer with ``payload`` as JSON."""
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class FastPath:
    """ASGI middleware answering well-formed ``/classify_array`` and ``/classify`` requests.

    Args:
        app: the wrapped ASGI app (BentoML's), which answers everything else.
        enabled: off, every JSON and multipart request goes to BentoML (``fast_path: false`` in
            the service config); ``application/x-npy`` bodies are answered here either way
            (:mod:`serving.npy_body`), a malformed one with a 400 naming what was wrong.
    """

    ROUTES = ("/classify_array", "/classify")

    def __init__(self, app: App, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled
        self.batcher: GreedyBatcher | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: D102
        service = SERVING.get("service")
        path = scope.get("path")
        if (
            service is None
            or scope["type"] != "http"
            or scope.get("method") != "POST"
            or path not in self.ROUTES
        ):
            await self.app(scope, receive, send)
            return
        content_type = _content_type(scope)
        # .npy bodies are answered here even with the fast path off: BentoML has no npy input
        npy = path == "/classify_array" and content_type == NPY_CONTENT_TYPE
        if not (self.enabled or npy):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return
        try:
            answer = await self._answer(path, content_type, body, scope, service)
        except BadArrayBody as err:
            await send_json_error(send, 400, str(err))
            return
        except NotFast:
            await self.app(scope, _replay(body, receive), send)
            return
        await send_json(send, answer)

    async def _answer(
        self, path: str, content_type: bytes, body: bytes, scope: Scope, service: Any
    ) -> Any:
        if self.batcher is None:
            self.batcher = GreedyBatcher(
                service.answer, service.max_batch_size, service.batch_threads
            )
        if path == "/classify_array":
            if content_type == NPY_CONTENT_TYPE:
                limit = service.limits.max_images
                images = parse_npy_images(body, service.predictor.check_images, limit)
            elif content_type == b"application/json":
                images = parse_array_request(body, service)
            else:
                raise NotFast
            return await self.batcher.submit(images, 3)
        if content_type != b"multipart/form-data":
            raise NotFast
        images, top_k, names = await parse_form_request(scope, body, service)
        answers = await self.batcher.submit(images, top_k)
        for name, a in zip(names, answers, strict=True):
            a["input"] = name
        return {"predictions": answers}


def _content_type(scope: Scope) -> bytes:
    """The request's media type, without parameters (``multipart/form-data``, ...)."""
    headers = dict(scope.get("headers") or [])
    return headers.get(b"content-type", b"").split(b";")[0].strip().lower()


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
