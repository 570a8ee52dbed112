"""HTTP load clients for ``bench/serve_load.py`` (keep-alive connections).

A :class:`Target` is one endpoint and how it wants images; :func:`latencies` sends requests one
after another, :func:`load` keeps ``concurrency`` aiohttp clients busy for a number of seconds.
Both return per-request milliseconds, so every row of the results has its p50 and p99.

Why the sequential rows use a bare socket, not aiohttp: on 2 cores, aiohttp building a
multipart form and parsing the answer added ~1 ms to every request's measured latency (a
single-image ``/classify`` p50 of 3.9 ms with aiohttp, 2.9 ms over a socket, same server); that
is the client's time, not the service's. :func:`latencies` sends pre-built HTTP/1.1 requests over
one keep-alive connection and reads each answer by its Content-Length, for every server alike.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Target:
    """One endpoint, its format (``array``, ``npy``, ``png`` or ``mlflow``), images a request."""

    name: str
    url: str
    kind: str
    per_request: int = 1

    def raw_request(self, images: np.ndarray, pngs: list[bytes], i: int) -> bytes:
        """The whole HTTP/1.1 request (headers and body) for the request starting at image i."""
        n = len(images)
        picks = [(i + j) % n for j in range(self.per_request)]
        if self.kind == "png":
            boundary = b"hiergan-bench-boundary"
            body = b"".join(
                b"--" + boundary + b'\r\nContent-Disposition: form-data; name="images"; '
                b'filename="x.png"\r\nContent-Type: image/png\r\n\r\n' + pngs[j] + b"\r\n"
                for j in picks
            )
            body += b"--" + boundary + b"--\r\n"
            content_type = b"multipart/form-data; boundary=" + boundary
        elif self.kind == "npy":
            buf = io.BytesIO()
            np.save(buf, images[picks])
            body, content_type = buf.getvalue(), b"application/x-npy"
        else:
            key = "images" if self.kind == "array" else "inputs"
            body = json.dumps({key: images[picks].tolist()}).encode()
            content_type = b"application/json"
        path = self.url.split("/", 3)[3]
        head = (
            f"POST /{path} HTTP/1.1\r\nHost: {self.url.split('/')[2]}\r\n"
            f"Content-Length: {len(body)}\r\n"
        ).encode()
        return head + b"Content-Type: " + content_type + b"\r\n\r\n" + body

    def request(self, images: np.ndarray, pngs: list[bytes], i: int) -> dict:
        """Aiohttp ``post`` keyword arguments for the request starting at image ``i``."""
        import aiohttp

        n = len(images)
        picks = [(i + j) % n for j in range(self.per_request)]
        if self.kind == "png":
            form = aiohttp.FormData()
            for j in picks:
                form.add_field("images", pngs[j], filename="x.png", content_type="image/png")
            return {"data": form}
        if self.kind == "npy":
            buf = io.BytesIO()
            np.save(buf, images[picks])
            return {"data": buf.getvalue(), "headers": {"content-type": "application/x-npy"}}
        key = "images" if self.kind == "array" else "inputs"
        return {
            "data": json.dumps({key: images[picks].tolist()}),
            "headers": {"content-type": "application/json"},
        }


@dataclass
class Measured:
    """Milliseconds of each answered request, images/s answered, and refusals by HTTP status."""

    ms: list[float] = field(default_factory=list)
    img_s: float = 0.0
    client_cores: float = 0.0  # the client's own CPU time / wall time (its share of the cores)
    errors: dict[int, int] = field(default_factory=dict)

    def record(self, status: int, start: float) -> None:
        """One answer: its time when 200, else its status counted as an error."""
        if status == 200:
            self.ms.append((time.perf_counter() - start) * 1000)
        else:
            self.errors[status] = self.errors.get(status, 0) + 1

    async def exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> None:
        """One pre-built request over a keep-alive socket, its answer read and recorded."""
        start = time.perf_counter()
        writer.write(request)
        self.record(await _answer(reader), start)

    async def post(self, session, target: Target, kwargs: dict) -> None:  # noqa: ANN001
        """One request; its time when answered 200, else its status counted as an error."""
        start = time.perf_counter()
        async with session.post(target.url, **kwargs) as r:
            await r.read()
            self.record(r.status, start)


async def _connect(target: Target) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A keep-alive socket to the target's host and port."""
    host, port = target.url.split("/")[2].split(":")
    return await asyncio.open_connection(host, int(port))


async def _answer(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 answer (status line, headers, Content-Length body); its status."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status, length = int(status_line.split()[1]), 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"transfer-encoding":
            raise ValueError("chunked answers are not read by this client")
    await reader.readexactly(length)
    return status


async def latencies(target: Target, images: np.ndarray, pngs: list[bytes], n: int) -> Measured:
    """``n`` requests one after another over one keep-alive socket (one client)."""
    requests = [target.raw_request(images, pngs, i * target.per_request) for i in range(n)]
    reader, writer = await _connect(target)
    out = Measured()
    try:
        begin, cpu = time.perf_counter(), time.process_time()
        for request in requests:
            await out.exchange(reader, writer, request)
        elapsed = time.perf_counter() - begin
        out.img_s = len(out.ms) * target.per_request / elapsed
        out.client_cores = (time.process_time() - cpu) / elapsed
    finally:
        writer.close()
    return out


async def paired_latencies(
    a: Target, b: Target, images: np.ndarray, pngs: list[bytes], n: int, blocks: int = 6
) -> tuple[Measured, Measured]:
    """``n`` sequential requests to each of two targets in alternating blocks (a b, b a, ...).

    For a difference between two servers (the OOD guard's cost): the host's speed drifts within
    minutes on these VMs, and blocks interleaved in time let that drift fall on both alike.
    """
    per = max(1, n // blocks)
    out, elapsed, cores = (Measured(), Measured()), [0.0, 0.0], ([], [])
    for block in range(blocks):
        for k in (0, 1) if block % 2 == 0 else (1, 0):
            m = await latencies((a, b)[k], images, pngs, per)
            out[k].ms.extend(m.ms)
            for status, count in m.errors.items():
                out[k].errors[status] = out[k].errors.get(status, 0) + count
            elapsed[k] += len(m.ms) * (a, b)[k].per_request / m.img_s if m.img_s else 0.0
            cores[k].append(m.client_cores)
    for k in (0, 1):
        out[k].img_s = len(out[k].ms) * (a, b)[k].per_request / elapsed[k] if elapsed[k] else 0.0
        out[k].client_cores = float(np.mean(cores[k]))
    return out


async def load(
    target: Target,
    images: np.ndarray,
    pngs: list[bytes],
    concurrency: int,
    seconds: float,
    client: str = "aiohttp",
) -> Measured:
    """``concurrency`` clients, each sending its next request as soon as the last is answered.

    ``client="socket"``: pre-built requests over one keep-alive socket per client (asyncio
    streams); ``"aiohttp"``: aiohttp sessions, bodies built per request for PNG forms. On 2 cores
    the client shares the CPU with the server: the lighter it is, the more of the machine the
    server measured gets.
    """
    if client == "aiohttp":
        return await _aiohttp_load(target, images, pngs, concurrency, seconds)
    starts = range(0, len(images), target.per_request)
    requests = [target.raw_request(images, pngs, i) for i in starts]
    out = Measured()
    stop = time.perf_counter() + seconds

    async def one_client(worker: int) -> None:
        reader, writer = await _connect(target)
        i = worker
        try:
            while time.perf_counter() < stop:
                await out.exchange(reader, writer, requests[i % len(requests)])
                i += concurrency
        finally:
            writer.close()

    begin, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one_client(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - begin
    out.img_s = len(out.ms) * target.per_request / elapsed
    out.client_cores = (time.process_time() - cpu) / elapsed
    return out


async def _aiohttp_load(
    target: Target, images: np.ndarray, pngs: list[bytes], concurrency: int, seconds: float
) -> Measured:
    import aiohttp

    # JSON bodies are built before the clock starts (a FormData is consumed once: built per use)
    bodies = (
        None
        if target.kind == "png"
        else [target.request(images, pngs, i) for i in range(0, len(images), target.per_request)]
    )
    out = Measured()
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)

    async def client(worker: int, session: aiohttp.ClientSession) -> None:
        i = worker
        while time.perf_counter() < stop:
            if bodies is None:
                kwargs = target.request(images, pngs, i * target.per_request)
            else:
                kwargs = bodies[i % len(bodies)]
            await out.post(session, target, kwargs)
            i += concurrency

    async with aiohttp.ClientSession(connector=connector) as session:
        begin, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(w, session) for w in range(concurrency)))
        elapsed = time.perf_counter() - begin
    out.img_s = len(out.ms) * target.per_request / elapsed
    out.client_cores = (time.process_time() - cpu) / elapsed
    return out


async def wait_ready(url: str, proc, log, timeout: float = 180) -> None:  # noqa: ANN001
    """Poll ``url`` until it answers 200 (the server process must stay alive meanwhile)."""
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout} s")
