"""HTTP serving benchmark: our BentoML service vs ``mlflow models serve`` of the same version.

Both servers run on loopback, serving the same registered model version; this script is the
client (asyncio + aiohttp, keep-alive connections). Rounds alternate between the servers so that a
noisy machine slows both alike. Measured per round:

* latency: sequential single-image requests (p50 / p99), ours on ``/classify_array`` (JSON array,
  the same payload MLflow gets) and on ``/classify`` (a PNG upload);
* throughput: ``--concurrency`` clients each sending single-image requests for ``--seconds``;
  ours is adaptively batched by BentoML, MLflow's pyfunc server is not.

Model: ``--model-dir DIR`` (a TrainedClassifier directory, registered into a temporary MLflow
store for the baseline) or, by default, the local stack's ``champion``.
Last line: JSON with p50_ms, p99_ms, img_s, baseline_img_s, ratio (DESIGN.md bench convention).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import machine  # noqa: E402 - after the path set-up above


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def register_temporary(model_dir: str, tmp: Path) -> tuple[str, str]:
    """Register ``model_dir`` in a temporary MLflow store; return (tracking URI, model URI)."""
    import mlflow

    from models.classifier.io import TrainedClassifier
    from registry.versions import log_classifier_version

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.create_experiment("serve_load", artifact_location=str(tmp / "artifacts"))
    with mlflow.start_run(experiment_id=experiment):
        mv, _ = log_classifier_version(TrainedClassifier.load(model_dir), {"bench": "serve_load"})
    return uri, f"models:/hiergan/{mv.version}"


def champion(tmp: Path) -> tuple[str, str, str]:
    """The stack's champion: (tracking URI, model URI, local classifier directory)."""
    from registry.stack import use_stack_tracking_uri
    from registry.versions import load_classifier

    uri = use_stack_tracking_uri()
    classifier, tags = load_classifier("champion")
    classifier.save(tmp / "champion")
    return uri, f"models:/hiergan/{tags['version']}", str(tmp / "champion")


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a server process with its output in ``log``."""
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


async def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Poll ``url`` until it answers 200."""
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


class Target:
    """One endpoint and how to send it a single image."""

    def __init__(self, name: str, url: str, kind: str) -> None:
        self.name, self.url, self.kind = name, url, kind

    def request(self, image: np.ndarray, png: bytes) -> dict:
        """Aiohttp ``post`` keyword arguments for one image."""
        import aiohttp

        if self.kind == "png":
            form = aiohttp.FormData()
            form.add_field("images", png, filename="x.png", content_type="image/png")
            return {"data": form}
        key = "images" if self.kind == "ours_array" else "inputs"
        return {
            "data": json.dumps({key: image[None].tolist()}),
            "headers": {"content-type": "application/json"},
        }


async def latencies(target: Target, images: np.ndarray, pngs: list[bytes], n: int) -> list[float]:
    """Sequential single-image requests; milliseconds each."""
    import aiohttp

    out = []
    async with aiohttp.ClientSession() as session:
        for i in range(n):
            kwargs = target.request(images[i % len(images)], pngs[i % len(pngs)])
            start_t = time.perf_counter()
            async with session.post(target.url, **kwargs) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{target.name}: HTTP {r.status}: {await r.text()}")
            out.append((time.perf_counter() - start_t) * 1000)
    return out


async def throughput(
    target: Target, images: np.ndarray, pngs: list[bytes], concurrency: int, seconds: float
) -> float:
    """Images per second with ``concurrency`` clients sending one image per request."""
    import aiohttp

    bodies = [target.request(images[i], pngs[i]) for i in range(len(images))]
    done = 0
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)

    async def client(worker: int, session: aiohttp.ClientSession) -> None:
        nonlocal done
        i = worker
        while time.perf_counter() < stop:
            kwargs = dict(bodies[i % len(bodies)])
            if target.kind == "png":  # a FormData is consumed once: build a fresh one
                kwargs = target.request(images[i % len(images)], pngs[i % len(pngs)])
            async with session.post(target.url, **kwargs) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{target.name}: HTTP {r.status}")
            done += 1
            i += concurrency

    async with aiohttp.ClientSession(connector=connector) as session:
        begin = time.perf_counter()
        await asyncio.gather(*(client(w, session) for w in range(concurrency)))
        elapsed = time.perf_counter() - begin
    return done / elapsed


def pct(values: list[float], q: float) -> float:
    """The q-th percentile."""
    return float(np.percentile(values, q))


async def run(args: argparse.Namespace, tmp: Path) -> dict:
    """Start both servers, measure in alternating rounds, stop them."""
    from PIL import Image

    if args.model_dir:
        tracking, model_uri = register_temporary(args.model_dir, tmp)
        model_dir = args.model_dir
    else:
        tracking, model_uri, model_dir = champion(tmp)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (256, 28, 28, 1), dtype=np.uint8)
    try:
        from models.data.ingest import DatasetConfig, build_dataset

        data = build_dataset(DatasetConfig(source="fashion-mnist", data_dir="data"))
        images = data.split("test")[0][:256]
    except Exception as err:  # noqa: BLE001 - random images are a fine fallback for timing
        print(f"(Fashion-MNIST not available: random images; {err})")
    pngs = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img[:, :, 0]).save(buf, format="PNG")
        pngs.append(buf.getvalue())

    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "HIERGAN_MODEL_DIR": model_dir}
    env["BENTOML_HOME"] = str(tmp / "bentoml")
    # mlflow starts `uvicorn` by name: the environment's bin directory must be on PATH
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    ours_port, mlflow_port = free_port(), free_port()
    bento = sys.executable, "-m", "bentoml", "serve", "serving.service:HierganService"
    ours = start([*bento, "--port", str(ours_port)], env, tmp / "ours.log")
    baseline = start(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri]
        + ["--env-manager", "local", "--host", "127.0.0.1", "-p", str(mlflow_port)],
        env,
        tmp / "mlflow.log",
    )
    try:
        await wait_ready(f"http://127.0.0.1:{ours_port}/readyz", ours, tmp / "ours.log")
        await wait_ready(f"http://127.0.0.1:{mlflow_port}/ping", baseline, tmp / "mlflow.log")
        targets = {
            "ours_array": Target(
                "ours /classify_array", f"http://127.0.0.1:{ours_port}/classify_array", "ours_array"
            ),
            "ours_png": Target(
                "ours /classify (PNG)", f"http://127.0.0.1:{ours_port}/classify", "png"
            ),
            "mlflow": Target(
                "mlflow /invocations", f"http://127.0.0.1:{mlflow_port}/invocations", "mlflow"
            ),
        }
        for t in targets.values():  # warm-up
            await latencies(t, images, pngs, 20)
        lat: dict[str, list[float]] = {k: [] for k in targets}
        thr: dict[str, list[float]] = {k: [] for k in targets}
        for round_index in range(args.rounds):
            for key, target in targets.items():
                lat[key] += await latencies(target, images, pngs, args.requests)
                thr[key].append(
                    await throughput(target, images, pngs, args.concurrency, args.seconds)
                )
                print(
                    f"round {round_index + 1}: {target.name}: "
                    f"p50 {pct(lat[key][-args.requests :], 50):.2f} ms, {thr[key][-1]:.0f} img/s"
                )
    finally:
        for proc in (ours, baseline):
            proc.terminate()
        for proc in (ours, baseline):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {
        "model": model_uri,
        "rows": {
            targets[k].name: {
                "p50_ms": pct(lat[k], 50),
                "p99_ms": pct(lat[k], 99),
                "img_s": statistics.median(thr[k]),
                "img_s_rounds": [round(x, 1) for x in thr[k]],
            }
            for k in targets
        },
    }


def main() -> None:
    """CLI."""
    from models.runtime.environment import quiet_telemetry

    quiet_telemetry()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", help="a TrainedClassifier directory (default: champion)")
    parser.add_argument("--quick", action="store_true", help="1 round, short phases")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300, help="latency requests per round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput phase length")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests, args.seconds = 1, 100, 4.0
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    rows = result["rows"]
    ours, base = rows["ours /classify_array"], rows["mlflow /invocations"]
    ratio = ours["img_s"] / base["img_s"]
    table = "| endpoint | p50 ms | p99 ms | img/s (median of rounds) | rounds |\n"
    table += "|---|---|---|---|---|\n"
    for name, r in rows.items():
        table += f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['img_s']:.0f} "
        table += f"| {r['img_s_rounds']} |\n"
    print(table)
    print(f"throughput ratio (ours batched array / mlflow): {ratio:.2f}x")
    if not args.quick:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "serve_load_cpu.md").write_text(
            "# HTTP serving: BentoML service vs `mlflow models serve` (same model version)\n\n"
            f"Machine: {machine()}. Client and both servers on the same machine (loopback). "
            f"Command: `python bench/serve_load.py {' '.join(sys.argv[1:])}`; model "
            f"{result['model']}; {args.rounds} alternating rounds; latency = sequential "
            f"single-image requests ({args.requests} per round); throughput = "
            f"{args.concurrency} concurrent clients, one image per request, "
            f"{args.seconds:.0f} s per round.\n\n{table}\n"
            f"Throughput ratio (ours, batched array endpoint / mlflow): **{ratio:.2f}x**\n"
        )
    png = rows["ours /classify (PNG)"]
    # Headline latency: /classify, the single-image endpoint. The batched array endpoint holds a
    # lone request for its batching window (max_latency_ms), so its p50 is reported beside it.
    print(
        json.dumps(
            {
                "p50_ms": round(png["p50_ms"], 2),
                "p99_ms": round(png["p99_ms"], 2),
                "array_p50_ms": round(ours["p50_ms"], 2),
                "array_p99_ms": round(ours["p99_ms"], 2),
                "img_s": round(ours["img_s"], 1),
                "png_img_s": round(png["img_s"], 1),
                "baseline_p50_ms": round(base["p50_ms"], 2),
                "baseline_img_s": round(base["img_s"], 1),
                "ratio": round(ratio, 2),
                "device": "cpu",
            }
        )
    )


if __name__ == "__main__":
    main()
