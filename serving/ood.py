"""The service's out-of-distribution policy: flag or reject, and what an old model means for it.

Every per-image answer carries ``"ood": {"score", "threshold", "is_ood"}`` (``None`` for a model
saved without OOD statistics). With ``ood.action: reject`` an out-of-distribution image is
answered with an error naming it instead of a prediction, the other images of the request are
still answered, and the request's status is 422. ``/classify`` sets that status itself;
``/classify_array`` is adaptively batched (one function call serves several requests, so it cannot
set one request's status): :class:`RejectedArrayStatus` gives its requests the 422, the image
names and the ``{"error", "predictions"}`` shape after BentoML has split the batch.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from serving.limits import App, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

REJECTED_KEY = "error"


class OodPolicy(BaseModel):
    """``ood:`` in the service config."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["flag", "reject"] = Field(
        "flag", description="flag: answer and mark is_ood; reject: answer 422 for such images"
    )


class GuardMissingError(RuntimeError):
    """``ood.action: reject`` with a model that has no OOD statistics."""


def check_guard(has_guard: bool, policy: OodPolicy, model_source: str) -> None:
    """Refuse to start for ``reject`` without a guard; warn for ``flag`` without one.

    Raises:
        GuardMissingError: ``reject`` and the model carries no OOD statistics.
    """
    if has_guard:
        return
    why = (
        f"model {model_source} carries no OOD statistics (ood.json / ood.safetensors: it was "
        "saved before the train pipeline fitted an out-of-distribution guard)"
    )
    if policy.action == "reject":
        raise GuardMissingError(
            f"ood.action is 'reject' but {why}: nothing could be rejected. Serve a model trained "
            "by the current train pipeline, or set ood.action: flag in the service config."
        )
    logger.warning('%s: every answer carries "ood": null', why)


def rejection(verdict: dict[str, Any]) -> str:
    """The error text for an out-of-distribution image (without its name)."""
    return (
        f"out of distribution (score {verdict['score']:.4g} > threshold {verdict['threshold']:.4g})"
    )


def reject_unusual(
    answers: list[dict[str, Any]], names: list[str] | None = None
) -> list[dict[str, Any]]:
    """Answers with each out-of-distribution image's prediction replaced by an error.

    The error names the image (``images[2]: out of distribution (...)``) when ``names`` are
    given; the verdict and the input name stay in the answer.
    """
    out = []
    for i, answer in enumerate(answers):
        verdict = answer.get("ood")
        if verdict is None or not verdict["is_ood"]:
            out.append(answer)
            continue
        name = names[i] if names else None
        message = f"{name}: {rejection(verdict)}" if name else rejection(verdict)
        rejected = {REJECTED_KEY: message, "ood": verdict}
        if name:
            rejected["input"] = name
        out.append(rejected)
    return out


def rejected_errors(answers: list[dict[str, Any]]) -> list[str]:
    """The error texts of rejected images, in order."""
    return [a[REJECTED_KEY] for a in answers if REJECTED_KEY in a]


def name_rejections(answers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``{"error", "predictions"}`` with image names if a request has rejected images, else None."""
    if not any(isinstance(a, dict) and REJECTED_KEY in a for a in answers):
        return None
    named = []
    for i, answer in enumerate(answers):
        if isinstance(answer, dict) and REJECTED_KEY in answer:
            answer = {**answer, REJECTED_KEY: f"images[{i}]: {answer[REJECTED_KEY]}"}
        named.append(answer)
    return {"error": "; ".join(rejected_errors(named)), "predictions": named}


class RejectedArrayStatus:
    """Give an adaptively batched route's requests with rejected images a 422 and their names.

    Only a successful (200) JSON list answer of ``path`` is read; anything else passes through.

    Args:
        app: the wrapped ASGI app.
        path: the batched route (``/classify_array``).
    """

    def __init__(self, app: App, path: str = "/classify_array") -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: D102
        if scope["type"] != "http" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] != 200:
                    await send(message)  # not ours to change: pass it and its body through
                    return
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                await _finish(send, start, b"".join(chunks))

        await self.app(scope, receive, capture)


async def _finish(send: Send, start: Message, body: bytes) -> None:
    """Send a buffered 200 answer, rewritten to 422 with names when it holds rejected images."""
    try:
        answers = json.loads(body)
        rewritten = name_rejections(answers) if isinstance(answers, list) else None
    except ValueError:
        rewritten = None
    if rewritten is not None:
        body = json.dumps(rewritten).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        start = {
            **start,
            "status": 422,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    await send(start)
    await send({"type": "http.response.body", "body": body})
