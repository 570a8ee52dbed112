"""ASGI middleware in front of BentoML: body size limits and a multipart field check.

BentoML reads whole bodies into memory and has no limit of its own, and its multipart parser
answers 500 to a form field it does not expect or a file where it expects text; this runs before
it and answers such requests with a 4xx JSON error instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_json_error(send: Send, status: int, message: str) -> None:
    """Answer with ``{"error": message}`` and ``status``."""
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_NAME = re.compile(rb'\bname="([^"]*)"')
_FILENAME = re.compile(rb'\bfilename="')


def multipart_problem(
    body: bytes, content_type: bytes, file_fields: set[str], text_fields: set[str]
) -> str | None:
    """What is wrong with a multipart body's fields, or None when every part is expected.

    Only the part headers are read: a part's content cannot contain the boundary.
    """
    match = re.search(rb'boundary="?([^";]+)"?', content_type)
    if match is None:
        return "multipart body without a boundary"
    for part in body.split(b"--" + match.group(1))[1:]:
        if part.startswith(b"--"):
            break  # the closing delimiter
        headers = part.split(b"\r\n\r\n", 1)[0]
        name_match = _NAME.search(headers)
        name = name_match.group(1).decode("utf-8", "replace") if name_match else ""
        is_file = _FILENAME.search(headers) is not None
        if name in file_fields and not is_file:
            return f"form field {name!r} must be a file upload"
        if name in text_fields and is_file:
            return f"form field {name!r} must be a value, not a file"
        if name not in file_fields | text_fields:
            expected = ", ".join(sorted(file_fields | text_fields))
            return f"unexpected form field {name!r} (expected: {expected})"
    return None


class BodySizeLimit:
    """Refuse bodies over a size limit and multipart bodies with fields a route does not take.

    The size is checked by ``Content-Length``, or by counting a chunked body.

    Args:
        app: the wrapped ASGI app.
        max_bytes: the body size limit.
        form_fields: per route, ``(file fields, text fields)`` that a multipart body may hold.
    """

    def __init__(
        self,
        app: App,
        max_bytes: int,
        form_fields: dict[str, tuple[set[str], set[str]]] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.form_fields = form_fields or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: D102
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = f"request body over the limit of {self.max_bytes} bytes"
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await send_json_error(send, 400, f"bad Content-Length header {length!r}")
                return
            if declared > self.max_bytes:
                await send_json_error(send, 413, f"{too_big} (Content-Length {declared})")
                return
        content_type = headers.get(b"content-type", b"")
        fields = self.form_fields.get(scope.get("path", ""))
        multipart = fields is not None and content_type.startswith(b"multipart/form-data")
        if length is not None and not multipart:
            await self.app(scope, receive, send)
            return
        # Chunked, or a form to check: buffer up to the limit, then replay the body to the app.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_json_error(send, 413, too_big)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        if multipart:
            assert fields is not None
            problem = multipart_problem(b"".join(chunks), content_type, *fields)
            if problem is not None:
                await send_json_error(send, 400, problem)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)
