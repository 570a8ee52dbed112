"""HTTP serving benchmark: our BentoML service vs ``mlflow models serve`` of the same version.

Both servers run on loopback, serving the same registered model version; this script is the
client (``bench/serve_clients.py``: asyncio + aiohttp, keep-alive connections). First the
*ceiling*: the classifier's batched forward pass in float32 (``Predictor.leaf_probs``) in this
process with one torch thread per core, at batch 1, 32, the service's max batch and 256 (no HTTP, no
JSON, no queueing); it is measured again before every round, and each row's share of it is the
median over rounds of its img/s ÷ that round's ceiling. A faster runtime is how serving closes
the gap to the model's own speed, so the ceiling stays the float32 model's; with an int8 runtime
its own forward pass is measured the same way beside it (a higher bar: int8 doubles it). Rounds
alternate over the servers and phases so that a noisy machine slows all alike; every row has
p50 and p99 of its requests and images/s:

* sequential single-image requests: ours on ``/classify`` (a PNG upload; the headline latency)
  and ``/classify_array`` (a JSON array, the payload MLflow gets), MLflow's ``/invocations``;
* ``--concurrency`` clients sending one image a request (ours adaptively batched by BentoML,
  MLflow's pyfunc server is not), and ``--batched-concurrency`` clients sending
  ``--batch-images`` images a request, as JSON and as ``.npy`` (``application/x-npy``; the
  batched headline, ``ceiling_share_batched``, is the ``.npy`` row).

Model: ``--model-dir DIR`` (a TrainedClassifier directory, registered into a temporary MLflow
store for the baseline) or, by default, the local stack's ``champion``.
Last line: JSON with p50_ms/p99_ms (/classify), img_s (single-image clients), ratio (ours /
mlflow), ceiling_img_s, ceiling_share (single-image clients / ceiling), ceiling_share_batched,
the same three against the served runtime's own forward pass (runtime_ceiling_img_s,
runtime_ceiling_share, runtime_ceiling_share_batched),
guard_p50_added (the OOD guard's share of single-image /classify p50: the same model served
without its OOD statistics is measured with /classify in alternating blocks of requests, so that
the host's drift falls on both alike; guard_p50_added_ms the same in milliseconds).
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
from bench.serve_clients import (  # noqa: E402
    Measured,
    Target,
    latencies,
    load,
    paired_latencies,
    wait_ready,
)


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


class Ceiling:
    """Images/s of the classifier's batched forward pass, in this process, per batch size.

    The ``Predictor`` the service builds, in float32 (``quantization="none"``: the ceiling) or
    with the service config's quantization (the runtime's own), with a torch thread per core,
    at the batch sizes a client and the batcher can form: no HTTP, no JSON, no queueing.
    Measured before the servers start and again before every round: the shares are each
    round's served img/s against that round's ceiling, so that the host's speed, which drifts
    on these VMs within minutes, cancels out of them.
    """

    def __init__(self, model_dir: str, images: np.ndarray, quantization: str | None = None) -> None:
        import torch

        from models.classifier.io import TrainedClassifier
        from models.classifier.prediction import Predictor
        from serving.config import load_service_config

        torch.set_num_threads(len(os.sched_getaffinity(0)))  # the model's own speed on these cores
        config = load_service_config()
        self.predictor = Predictor(
            TrainedClassifier.load(model_dir), quantization=quantization or config.quantization
        )
        # whether the service's runtime is another than this probe's (then it is measured too)
        self.quantized_differs = self.predictor.quantization != config.quantization
        self.batches = {
            n: np.ascontiguousarray(np.resize(images, (n, *images.shape[1:])))
            for n in (1, 32, config.batching.max_batch_size, 256)
        }

    def measure(self, seconds: float) -> dict[int, float]:
        """Images/s at each batch size, ``seconds`` each."""
        out = {}
        for batch, x in self.batches.items():
            self.predictor.leaf_probs(x)
            n, begin = 0, time.perf_counter()
            while time.perf_counter() - begin < seconds:
                self.predictor.leaf_probs(x)
                n += batch
            out[batch] = n / (time.perf_counter() - begin)
        return out


def targets(ours: int, baseline: int, args: argparse.Namespace) -> list[tuple[str, Target, int]]:
    """(row name, target, concurrency): concurrency 0 = sequential requests (latency)."""
    array, png = f"http://127.0.0.1:{ours}/classify_array", f"http://127.0.0.1:{ours}/classify"
    mlflow = f"http://127.0.0.1:{baseline}/invocations"
    c, b, k = args.concurrency, args.batched_concurrency, args.batch_images
    return [
        (PNG_ROW, Target("ours png", png, "png"), 0),
        ("ours /classify_array, sequential", Target("ours array", array, "array"), 0),
        ("mlflow /invocations, sequential", Target("mlflow", mlflow, "mlflow"), 0),
        (f"ours /classify_array, {c} clients x 1 image", Target("ours array", array, "array"), c),
        (f"ours /classify (PNG), {c} clients x 1 image", Target("ours png", png, "png"), c),
        (f"mlflow /invocations, {c} clients x 1 image", Target("mlflow", mlflow, "mlflow"), c),
        (
            f"ours /classify_array, {b} clients x {k} images",
            Target("ours array", array, "array", k),
            b,
        ),
        (
            f"ours /classify_array (npy), {b} clients x {k} images",
            Target("ours npy", array, "npy", k),
            b,
        ),
        (
            f"mlflow /invocations, {b} clients x {k} images",
            Target("mlflow", mlflow, "mlflow", k),
            b,
        ),
    ]


def test_images() -> np.ndarray:
    """256 Fashion-MNIST test images, or random ones when the data is absent."""
    try:
        from models.data.ingest import DatasetConfig, build_dataset

        data = build_dataset(DatasetConfig(source="fashion-mnist", data_dir="data"))
        return data.split("test")[0][:256]
    except Exception as err:  # noqa: BLE001 - random images are a fine fallback for timing
        print(f"(Fashion-MNIST not available: random images; {err})")
        return np.random.default_rng(0).integers(0, 256, (256, 28, 28, 1), dtype=np.uint8)


def png_uploads(images: np.ndarray) -> list[bytes]:
    """Each uint8 ``[H, W, C]`` image as the PNG file a client uploads to ``/classify``."""
    from PIL import Image

    pngs = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    return pngs


async def run(args: argparse.Namespace, tmp: Path) -> dict:
    """The ceiling, then both servers measured in alternating rounds."""
    if args.model_dir:
        tracking, model_uri = register_temporary(args.model_dir, tmp)
        model_dir = args.model_dir
    else:
        tracking, model_uri, model_dir = champion(tmp)
    model_dir = with_activation_ranges_dir(model_dir, tmp / "ranged")
    images = test_images()
    pngs = png_uploads(images)
    # the classifier's own forward pass in float32 (the ceiling: what a faster runtime is judged
    # against), and the served runtime's (int8 raises it; the same probe when unquantized)
    probes = {"model": Ceiling(model_dir, images, "none")}
    probes["runtime"] = (
        Ceiling(model_dir, images) if probes["model"].quantized_differs else probes["model"]
    )
    ceilings = {k: p.measure(2.0 if args.quick else 5.0) for k, p in probes.items()}
    print(f"ceiling (in-process forward, img/s by batch size): {ceilings}")

    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "HIERGAN_MODEL_DIR": model_dir}
    env["BENTOML_HOME"] = str(tmp / "bentoml")
    # mlflow starts `uvicorn` by name: the environment's bin directory must be on PATH
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    ours_port, mlflow_port, bare_port = free_port(), free_port(), free_port()
    bento = sys.executable, "-m", "bentoml", "serve", "serving.service:HierganService"
    ours = start([*bento, "--port", str(ours_port)], env, tmp / "ours.log")
    # the guard's cost: the same classifier without its OOD statistics, served beside it
    bare_dir = without_guard(model_dir, tmp / "no_guard")
    bare = start(
        [*bento, "--port", str(bare_port)], env | {"HIERGAN_MODEL_DIR": bare_dir}, tmp / "bare.log"
    )
    baseline = start(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri]
        + ["--env-manager", "local", "--host", "127.0.0.1", "-p", str(mlflow_port)],
        env,
        tmp / "mlflow.log",
    )
    try:
        await wait_ready(f"http://127.0.0.1:{ours_port}/readyz", ours, tmp / "ours.log")
        await wait_ready(f"http://127.0.0.1:{mlflow_port}/ping", baseline, tmp / "mlflow.log")
        await wait_ready(f"http://127.0.0.1:{bare_port}/readyz", bare, tmp / "bare.log")
        bare_png = Target("ours png, no guard", f"http://127.0.0.1:{bare_port}/classify", "png")
        phases = [*targets(ours_port, mlflow_port, args), (NO_GUARD_ROW, bare_png, 0)]
        rows, round_ceilings = await measure(phases, images, pngs, args, probes)
    finally:
        for proc in (ours, baseline, bare):
            proc.terminate()
        for proc in (ours, baseline, bare):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {
        "model": model_uri,
        "ceiling": ceilings,
        "round_ceilings": round_ceilings,
        "rows": rows,
    }


async def measure(
    phases: list[tuple[str, Target, int]],
    images: np.ndarray,
    pngs: list[bytes],
    args,  # noqa: ANN001
    probes: dict[str, Ceiling],
) -> tuple[dict, dict[str, list[float]]]:
    """Every phase once per round, rounds alternating; p50, p99, img/s and shares per row.

    Returns the rows and each round's ceilings (per probe, the best batch size's img/s, measured
    before the round's phases); a row's ``share`` is the median over rounds of its img/s ÷ the
    float32 model's ceiling, ``share_runtime`` the same against the served runtime's.
    """
    for _, target, _ in phases:  # warm-up, including BentoML's batching optimiser
        await latencies(target, images, pngs, 20)
        await load(target, images, pngs, 8, 1.0, args.client)
    ms: dict[str, list[float]] = {name: [] for name, _, _ in phases}
    img_s: dict[str, list[float]] = {name: [] for name, _, _ in phases}
    client: dict[str, list[float]] = {name: [] for name, _, _ in phases}
    errors: dict[str, dict[int, int]] = {name: {} for name, _, _ in phases}
    tops: dict[str, list[float]] = {k: [] for k in probes}
    targets_by_name = {name: target for name, target, _ in phases}
    pairs = {PNG_ROW: NO_GUARD_ROW} if NO_GUARD_ROW in targets_by_name else {}
    for round_index in range(args.rounds):
        for key, probe in probes.items():
            tops[key].append(max(probe.measure(1.0 if args.quick else 2.0).values()))
        print(f"round {round_index + 1}: ceilings { ({k: round(v[-1]) for k, v in tops.items()}) }")
        measured: dict[str, Measured] = {}
        for name, target, concurrency in phases:
            if name in measured:  # the second of a pair, measured with the first
                pass
            elif name in pairs:  # the guard's cost: two servers in alternating blocks
                partner = pairs[name]
                measured[name], measured[partner] = await paired_latencies(
                    target, targets_by_name[partner], images, pngs, args.requests
                )
            elif concurrency == 0:
                measured[name] = await latencies(target, images, pngs, args.requests)
            else:
                measured[name] = await load(
                    target, images, pngs, concurrency, args.seconds, args.client
                )
        for name, m in measured.items():
            ms[name] += m.ms
            img_s[name].append(m.img_s)
            client[name].append(m.client_cores)
            for status, count in m.errors.items():
                errors[name][status] = errors[name].get(status, 0) + count
            print(
                f"round {round_index + 1}: {name}: p50 {pct(m.ms, 50):.2f} ms, "
                f"p99 {pct(m.ms, 99):.2f} ms, {m.img_s:.0f} img/s, refused {m.errors or 0}"
            )
    rows = {
        name: {
            "p50_ms": pct(ms[name], 50),
            "p99_ms": pct(ms[name], 99),
            "img_s": statistics.median(img_s[name]),
            "img_s_rounds": [round(x, 1) for x in img_s[name]],
            "share": _share(img_s[name], tops["model"]),
            "share_runtime": _share(img_s[name], tops["runtime"]),
            "client_cores": round(statistics.median(client[name]), 3),
            "refused": errors[name],
        }
        for name in ms
    }
    return rows, {k: [round(x, 1) for x in v] for k, v in tops.items()}


def _share(img_s: list[float], tops: list[float]) -> float:
    """The median over rounds of img/s ÷ that round's ceiling."""
    return statistics.median(x / top for x, top in zip(img_s, tops, strict=True))


PNG_ROW = "ours /classify (PNG), sequential"
# measured with PNG_ROW in alternating blocks (serve_clients.paired_latencies)
NO_GUARD_ROW = "ours /classify (PNG), sequential, model without its OOD guard"


def with_activation_ranges_dir(model_dir: str, directory: Path) -> str:
    """``model_dir`` when it carries every int8 activation range, else a copy with them fitted.

    Artifacts from before the calibration step fitted them (or the neck's) would otherwise be
    served ``dynamic-int8`` (in part); they are fitted here on the val split, as that step does.
    """
    from bench.serving_runtime import with_ranges
    from models.classifier.io import TrainedClassifier
    from models.data.ingest import DatasetConfig, build_dataset
    from models.runtime.static_int8 import missing_ranges

    classifier = TrainedClassifier.load(model_dir)
    if not missing_ranges(classifier.build("cpu"), classifier.activation_ranges):
        return model_dir
    data = build_dataset(DatasetConfig(source="fashion-mnist", data_dir="data"))
    with_ranges(classifier, data.split("val")[0]).save(directory)
    return str(directory)


def without_guard(model_dir: str, directory: Path) -> str:
    """A copy of the classifier directory without its OOD statistics (``"ood": null``)."""
    import shutil

    from models.classifier.io import OOD_INFO_FILE, OOD_WEIGHTS_FILE

    shutil.copytree(
        model_dir, directory, ignore=shutil.ignore_patterns(OOD_INFO_FILE, OOD_WEIGHTS_FILE)
    )
    return str(directory)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (NaN when nothing was answered)."""
    return float(np.percentile(values, q)) if values else float("nan")


def report(result: dict, args: argparse.Namespace) -> tuple[str, dict]:
    """The Markdown table and the headline JSON of a run."""
    rows, ceilings, tops = result["rows"], result["ceiling"], result["round_ceilings"]
    c, b, k = args.concurrency, args.batched_concurrency, args.batch_images
    single = rows[f"ours /classify_array, {c} clients x 1 image"]
    batched_json = rows[f"ours /classify_array, {b} clients x {k} images"]
    batched = rows[f"ours /classify_array (npy), {b} clients x {k} images"]
    base = rows[f"mlflow /invocations, {c} clients x 1 image"]
    png = rows[PNG_ROW]
    bare_png = rows[NO_GUARD_ROW]
    top, top_runtime = statistics.median(tops["model"]), statistics.median(tops["runtime"])
    table = "| endpoint, clients | p50 ms | p99 ms | img/s (median of rounds) "
    table += (
        "| ÷ ceiling: the model's float32 forward pass (median of rounds, each against its own) "
    )
    table += "| ÷ the served runtime's forward pass (same) "
    table += "| client's CPU (cores) | refused (HTTP status: count) |\n"
    table += "|---|---|---|---|---|---|---|---|\n"
    for name, r in rows.items():
        table += f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['img_s']:.0f} "
        table += f"| {r['share']:.1%} | {r['share_runtime']:.1%} | {r.get('client_cores', 0):.2f} "
        table += f"| {r['refused'] or ''} |\n"
    from serving.config import load_service_config

    service = load_service_config()
    table += f"\nService: {service.workers} worker(s) x {service.threads_per_worker()} torch "
    table += f"thread(s), quantization {service.quantization}.\n"
    table += "\nCeiling: the classifier's `Predictor.leaf_probs` in process in float32, a thread "
    table += "per core: "
    table += ", ".join(f"batch {n}: {v:.0f} img/s" for n, v in ceilings["model"].items())
    table += " before the servers started; the best batch size before each round: "
    table += ", ".join(f"{v:.0f}" for v in tops["model"]) + " img/s. "
    table += f"The served runtime's ({service.quantization}), the same way: "
    table += ", ".join(f"batch {n}: {v:.0f} img/s" for n, v in ceilings["runtime"].items())
    table += "; before each round: " + ", ".join(f"{v:.0f}" for v in tops["runtime"])
    table += " img/s.\n"
    headline = {
        # headline latency: /classify, the single-image endpoint (one client, sequential)
        "p50_ms": round(png["p50_ms"], 2),
        "p99_ms": round(png["p99_ms"], 2),
        "img_s": round(single["img_s"], 1),
        "img_s_p99_ms": round(single["p99_ms"], 2),
        "batched_img_s": round(batched["img_s"], 1),
        "batched_p99_ms": round(batched["p99_ms"], 2),
        "batched_json_img_s": round(batched_json["img_s"], 1),
        "baseline_img_s": round(base["img_s"], 1),
        "baseline_p99_ms": round(base["p99_ms"], 2),
        "ratio": round(single["img_s"] / base["img_s"], 2),
        "ceiling_img_s": round(top, 1),  # the median of the rounds' ceilings (float32 model)
        "ceiling_share": round(single["share"], 3),  # each round against its own ceiling
        "ceiling_share_batched": round(batched["share"], 3),
        # the same against the served runtime's own forward pass (int8: a higher bar)
        "runtime_ceiling_img_s": round(top_runtime, 1),
        "runtime_ceiling_share": round(single["share_runtime"], 3),
        "runtime_ceiling_share_batched": round(batched["share_runtime"], 3),
        # the OOD guard's cost: single-image /classify p50 with it vs the same model without it
        "no_guard_p50_ms": round(bare_png["p50_ms"], 2),
        "guard_p50_added": round(png["p50_ms"] / bare_png["p50_ms"] - 1, 4),
        "guard_p50_added_ms": round(png["p50_ms"] - bare_png["p50_ms"], 3),
        "device": "cpu",
        "quantization": service.quantization,
        "workers": service.workers,
        "torch_threads_per_worker": service.threads_per_worker(),
    }
    return table, headline


def main() -> None:
    """CLI."""
    from models.runtime.environment import quiet_telemetry

    quiet_telemetry()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", help="a TrainedClassifier directory (default: champion)")
    parser.add_argument("--quick", action="store_true", help="1 round, short phases")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300, help="sequential requests a round")
    parser.add_argument("--concurrency", type=int, default=32, help="single-image clients")
    parser.add_argument("--batched-concurrency", type=int, default=8, help="batch clients")
    parser.add_argument("--batch-images", type=int, default=32, help="images a batch request")
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput phase length")
    parser.add_argument(
        "--client",
        choices=["aiohttp", "socket"],
        default="aiohttp",
        # socket clients use a third of aiohttp's CPU (0.05-0.08 vs 0.15-0.22 cores for 32
        # clients) but hold one connection each for a whole phase: with 2 workers, 8 batch
        # clients' connections can land unevenly and halve a row (2 quick runs: .npy 1,476 and
        # 1,324 img/s vs 2,727 and 2,590 with aiohttp); the concurrent rows keep aiohttp
        help="concurrent load clients: aiohttp sessions, or pre-built requests over sockets",
    )
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests, args.seconds = 1, 100, 3.0
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    table, headline = report(result, args)
    print(table)
    if not args.quick:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "serve_load_cpu.json").write_text(json.dumps(result | headline, indent=1))
        (out / "serve_load_cpu.md").write_text(
            "# HTTP serving: BentoML service vs `mlflow models serve` (same model version)\n\n"
            f"Machine: {machine()}. Client, both servers and the ceiling on the same machine "
            f"(loopback). Command: `python bench/serve_load.py {' '.join(sys.argv[1:])}`; model "
            f"{result['model']}; {args.rounds} alternating rounds; sequential = one client, "
            f"{args.requests} requests a round; clients = concurrent keep-alive clients, each "
            f"sending its next request when answered, {args.seconds:.0f} s a round.\n\n"
            f"{table}\nHeadline: `{json.dumps(headline)}`\n"
        )
    print(json.dumps(headline))


if __name__ == "__main__":
    main()
