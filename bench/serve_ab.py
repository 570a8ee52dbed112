"""Paired single-image ``/classify`` latency of two served models or two code trees (A/B).

``bench/serve_load.py`` measures everything once; this measures one difference well: what the OOD
guard adds to a request (``--model DIR``: the same model served without its OOD statistics, A,
and with them, B), or what a code change does (``--tree-b DIR``: B served from another checkout,
the same model) or another model (``--model-b DIR``). Both servers run at once on loopback with
the service's config; each round sends ``--requests`` sequential PNG requests to each in
alternating blocks (``bench/serve_clients.py: paired_latencies``), so the host's drift within
minutes falls on both alike; a model without int8 activation ranges gets them fitted on the val
split first, as ``serve_load.py`` does.

    python bench/serve_ab.py --model DIR [--model-b DIR] [--tree-b DIR] [--requests 1200]
        [--rounds 8] [--save NAME]

Prints each round's p50s and, last, one JSON line: the medians over rounds of A's and B's p50,
B - A in milliseconds and as a share of A, and every round's pair; ``--save NAME`` also writes
them as ``bench/results/NAME.md`` and ``.json`` (the machine, the command, a row per round).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine  # noqa: E402
from bench.serve_clients import Target, paired_latencies, wait_ready  # noqa: E402
from bench.serve_load import (  # noqa: E402
    REPO,
    free_port,
    png_uploads,
    start,
    test_images,
    with_activation_ranges_dir,
    without_guard,
)


def guard_cost(args: argparse.Namespace) -> bool:
    """Whether A and B are the same model, A without its guard (no --model-b, no --tree-b)."""
    return not args.model_b and not args.tree_b


def serve(model_dir: str, tree: str, tmp: Path, name: str) -> tuple[Any, int, Path]:
    """Start ``bentoml serve`` of ``model_dir`` from the checkout ``tree``: (process, port, log)."""
    env = {**os.environ, "HIERGAN_MODEL_DIR": model_dir, "PYTHONPATH": tree}
    env["BENTOML_HOME"] = str(tmp / f"bentoml_{name}")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    port = free_port()
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:HierganService"]
    log = tmp / f"{name}.log"
    return start([*command, "--working-dir", tree, "--port", str(port)], env, log), port, log


async def compare(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Serve A and B, warm both up, then the paired rounds."""
    model_a = with_activation_ranges_dir(args.model, tmp / "ranged_a")
    model_b = (
        with_activation_ranges_dir(args.model_b, tmp / "ranged_b") if args.model_b else model_a
    )
    if guard_cost(args):  # A is B without its OOD statistics
        model_a = without_guard(model_a, tmp / "no_guard")
    images = test_images()
    pngs = png_uploads(images)
    servers = [
        serve(model_a, str(REPO), tmp, "a"),
        serve(model_b, args.tree_b or str(REPO), tmp, "b"),
    ]
    try:
        for proc, port, log in servers:
            await wait_ready(f"http://127.0.0.1:{port}/readyz", proc, log)
        a, b = (
            Target(k, f"http://127.0.0.1:{s[1]}/classify", "png")
            for k, s in zip("AB", servers, strict=True)
        )
        await paired_latencies(a, b, images, pngs, 200)  # warm-up
        rounds = []
        for r in range(args.rounds):
            ma, mb = await paired_latencies(a, b, images, pngs, args.requests)
            pair = (float(np.percentile(ma.ms, 50)), float(np.percentile(mb.ms, 50)))
            rounds.append(pair)
            print(
                f"round {r}: A {pair[0]:.3f} ms, B {pair[1]:.3f} ms, B - A {pair[1] - pair[0]:+.3f}"
            )
    finally:
        for proc, _, _ in servers:
            proc.terminate()
        for proc, _, _ in servers:
            proc.wait(timeout=30)
    p50_a = statistics.median(x for x, _ in rounds)
    p50_b = statistics.median(y for _, y in rounds)
    return {
        "a": f"{args.model} without its guard" if guard_cost(args) else args.model,
        "b": args.model_b or args.model,
        "tree_b": args.tree_b or str(REPO),
        "requests": args.requests,
        "a_p50_ms": round(p50_a, 3),
        "b_p50_ms": round(p50_b, 3),
        "b_minus_a_ms": round(p50_b - p50_a, 3),
        "b_over_a": round(p50_b / p50_a - 1, 4),
        "rounds": [[round(x, 3), round(y, 3)] for x, y in rounds],
    }


def _commit(tree: Path) -> str:
    """The checkout's commit (short), with ``+changes`` when its tracked files differ from it."""
    import subprocess

    def git(*args: str) -> str:
        run = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True)
        return run.stdout.strip() if run.returncode == 0 else "?"

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + (" +changes" if dirty not in ("", "?") else "")


def save(result: dict[str, Any], name: str) -> None:
    """``bench/results/<name>.md`` and ``.json``: the summary, a row per round, the machine."""
    out = REPO / "bench" / "results"
    result = {
        **result,
        "commit_a": _commit(REPO),
        "commit_b": _commit(Path(result["tree_b"])),
        "machine": machine(),
        "command": " ".join(["bench/serve_ab.py", *sys.argv[1:]]),
    }
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    diffs = [b - a for a, b in result["rounds"]]
    rows = "".join(
        f"| {r} | {a:.3f} | {b:.3f} | {b - a:+.3f} |\n" for r, (a, b) in enumerate(result["rounds"])
    )
    (out / f"{name}.md").write_text(
        f"# Paired single-image `/classify` latency: A vs B\n\n"
        f"Machine: {result['machine']}. Command: `python {result['command']}`\n\n"
        f"- A: {result['a']}, served from this checkout (commit {result['commit_a']})\n"
        f"- B: {result['b']}, served from `{result['tree_b']}` (commit {result['commit_b']})\n"
        f"- each round: {result['requests']} sequential PNG requests to each, in alternating "
        f"blocks (`bench/serve_clients.py: paired_latencies`)\n\n"
        f"**B - A: {result['b_minus_a_ms']:+.3f} ms ({100 * result['b_over_a']:+.1f} % of A)**, "
        f"medians over rounds of each server's p50 (A {result['a_p50_ms']:.3f} ms, "
        f"B {result['b_p50_ms']:.3f} ms); B - A from {min(diffs):+.3f} to {max(diffs):+.3f} ms "
        f"across rounds\n\n"
        f"| round | A p50 (ms) | B p50 (ms) | B - A (ms) |\n|---|---|---|---|\n{rows}"
    )


def main() -> None:  # noqa: D103 - the module docstring says it all
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="A's model (and B's without --model-b)")
    parser.add_argument("--model-b", help="B's model (default: --model; A then has no guard)")
    parser.add_argument("--tree-b", help="a checkout of this repository that serves B")
    parser.add_argument("--requests", type=int, default=1200, help="to each server, a round")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--save", metavar="NAME", help="write bench/results/NAME.md and .json")
    args = parser.parse_args()
    from models.runtime.environment import quiet_telemetry

    quiet_telemetry()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(compare(args, Path(tmp)))
    print(json.dumps(result))
    if args.save:
        save(result, args.save)


if __name__ == "__main__":
    main()
