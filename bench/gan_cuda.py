"""The GPU part of ``bench/gan_throughput.py``: a budgeted run for a lent GPU machine.

(``--budgeted --device cpu`` runs the same phases on CPU, without CUDA graphs: a dry run.)

Within ``--budget-s`` seconds of wall time (from process start; 0 = no budget) it measures the
reference loop at ``--batch-size``, our loop eager and as one CUDA graph per step at each of
``--batch-sizes`` (bf16 autocast and channels_last: the config defaults on CUDA), counts the model
FLOPs of one step, and reports images/s and the share of the GPU's bf16 peak. A phase that would
not fit in what is left of the budget is skipped and named. With ``--compile``, a child process
compiles our networks (``torch.compile``) while the parent measures, then times them once the
parent is done; it is killed at the budget if it has not finished.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.gan_steps import GraphedStep, ReferenceLoop, capturable, flops_per_image, rate
from models.gan.config import GanTrainConfig
from models.gan.networks import GanArchitecture
from models.gan.training import GanTrainer

GO_ENV = "HIERGAN_BENCH_GO"  # the file whose appearance lets the compiled child start timing
EXIT_MARGIN_S = 3.0  # kept for writing results and exiting


def trainer(
    images: np.ndarray, arch: GanArchitecture, batch: int, device: torch.device, **opts: object
) -> GanTrainer:
    """Our trainer with the CUDA defaults (bf16, channels_last) plus ``opts``."""
    config = GanTrainConfig(
        architecture=arch, batch_size=batch, device=str(device), progress=False, **opts
    )
    return GanTrainer(config, images, run_dir=tempfile.mkdtemp(prefix="hiergan-bench-"))


class Budget:
    """Seconds left of the wall-clock budget, counted from ``started`` (monotonic)."""

    def __init__(self, seconds: float, started: float) -> None:
        self.seconds, self.started = seconds, started

    def left(self) -> float:
        """Seconds left (infinite without a budget)."""
        if self.seconds <= 0:
            return float("inf")
        return self.seconds - (time.monotonic() - self.started) - EXIT_MARGIN_S

    def fits(self, needed: float) -> bool:
        """Whether a phase of ``needed`` seconds fits in what is left."""
        return self.left() >= needed


def compiled_child(args: argparse.Namespace, images: np.ndarray, arch: GanArchitecture) -> dict:
    """In the child: compile ours, wait for the parent's go, time it."""
    device = torch.device(args.device)
    started = time.perf_counter()
    ours = trainer(images, arch, args.batch_size, device, compile=True)
    for _ in range(3):  # compiles both networks (and D's frozen variant)
        ours.train_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    compile_s = time.perf_counter() - started
    go = Path(os.environ[GO_ENV])
    while not go.exists():
        time.sleep(0.05)
    img_s = rate(ours.train_step, args.batch_size, args.seconds, device)
    return {"name": f"ours compiled @ {args.batch_size}", "img_s": img_s, "compile_s": compile_s}


def start_child(args: argparse.Namespace, go: Path) -> subprocess.Popen:
    """The compiled-run child, started now so that it compiles while the parent measures."""
    command = [sys.executable, sys.argv[0], "--device", args.device, "--child", "compiled"]
    command += ["--batch-size", str(args.batch_size), "--seconds", str(args.seconds)]
    command += ["--data-dir", args.data_dir, "--width", str(args.width)]
    env = {**os.environ, GO_ENV: str(go)}
    cores = sorted(os.sched_getaffinity(0))
    child_cores = cores[-max(1, len(cores) // 4) :] if len(cores) >= 8 else cores
    if child_cores != cores:  # compiling must not slow the parent's CPU-bound phases
        os.sched_setaffinity(0, [c for c in cores if c not in child_cores])
        env["TORCHINDUCTOR_COMPILE_THREADS"] = str(len(child_cores))
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: os.sched_setaffinity(0, child_cores),  # noqa: PLW1509 - no threads yet
    )


def finish_child(child: subprocess.Popen, go: Path, budget: Budget) -> dict:
    """Let the child time its run; its row, or why there is none."""
    go.touch()
    try:
        out, _ = child.communicate(timeout=max(1.0, budget.left()))
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return {"name": "ours compiled", "skipped": "did not compile and run within the budget"}
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"name": "ours compiled", "error": "\n".join(lines[-15:])}


def measure(name: str, make_step, batch: int, args, device, budget: Budget, needed: float) -> dict:  # noqa: ANN001
    """One phase: build the step, warm it up, time it; skipped when it does not fit."""
    if not budget.fits(needed):
        return {"name": name, "skipped": f"{budget.left():.1f} s left of the budget"}
    try:
        step = make_step()
        rate(step, batch, 0.0, device)  # warm-up: cuDNN autotuning, allocator, workers
        return {"name": name, "batch": batch, "img_s": rate(step, batch, args.seconds, device)}
    except Exception as err:  # noqa: BLE001 - a failed variant is reported, the others still run
        return {"name": name, "error": f"{type(err).__name__}: {err}"[:500]}
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def budgeted_run(
    args: argparse.Namespace,
    images: np.ndarray,
    arch: GanArchitecture,
    device: torch.device,
    started: float,
) -> tuple[dict, str]:
    """Every CUDA phase that fits in the budget; the JSON result and a Markdown table."""
    if args.child:
        return compiled_child(args, images, arch), ""
    budget = Budget(args.budget_s, started)
    go = Path(tempfile.mkdtemp(prefix="hiergan-go-")) / "go"
    child = start_child(args, go) if args.compile else None
    flops = flops_per_image(trainer(images[:4096], arch, 64, device))
    rows = [
        measure(
            f"reference @ {args.batch_size}",
            lambda: ReferenceLoop(arch, images, args.batch_size, args.workers, device).step,
            args.batch_size,
            args,
            device,
            budget,
            args.seconds + 4.0,
        )
    ]
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        rows.append(
            measure(
                f"ours eager @ {batch}",
                lambda b=batch: trainer(images, arch, b, device).train_step,
                batch,
                args,
                device,
                budget,
                args.seconds + 1.5,
            )
        )
        if device.type == "cuda" and not args.no_graphs:
            rows.append(
                measure(
                    f"ours CUDA graph @ {batch}",
                    lambda b=batch: GraphedStep(capturable(trainer(images, arch, b, device))).step,
                    batch,
                    args,
                    device,
                    budget,
                    args.seconds + 2.0,
                )
            )
    if child is not None:
        rows.append(finish_child(child, go, budget))
    return summarise(rows, flops, args, device)


def summarise(rows: list[dict], flops: float, args, device) -> tuple[dict, str]:  # noqa: ANN001
    """Peak shares, the best row, ours / reference at the same batch; JSON and Markdown."""
    peak = args.peak_tflops * 1e12
    for row in rows:
        if "img_s" in row:
            row["img_s"] = round(row["img_s"], 1)
            row["peak_share"] = round(flops * row["img_s"] / peak, 5)
    timed = [r for r in rows if "img_s" in r and not r["name"].startswith("reference")]
    best = max(timed, key=lambda r: r["img_s"], default=None)
    ref = rows[0].get("img_s")
    same = [r for r in timed if r.get("batch") == args.batch_size]
    result = {
        "device": device.type,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "flops_per_image": round(flops),
        "peak_tflops": args.peak_tflops,
        "best": best["name"] if best else None,
        "best_img_s": best["img_s"] if best else None,
        "best_peak_share": best["peak_share"] if best else None,
        "ref_img_s": ref,
        "ratio_same_batch": round(max(r["img_s"] for r in same) / ref, 2) if same and ref else None,
        "rows": rows,
    }
    table = "| loop | images/s | share of bf16 peak | note |\n|---|---|---|---|\n"
    for r in rows:
        note = r.get("skipped") or r.get("error", "")[:120]
        if "compile_s" in r:
            note = f"compiled in {r['compile_s']:.0f} s"
        img_s = f"{r['img_s']:.0f}" if "img_s" in r else "-"
        share = f"{100 * r['peak_share']:.2f} %" if "peak_share" in r else "-"
        table += f"| {r['name']} | {img_s} | {share} | {note} |\n"
    table += f"\nModel FLOPs per image (one training step, counted): {flops / 1e6:.1f} M.\n"
    return result, table
