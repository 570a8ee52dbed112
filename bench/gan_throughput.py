"""GAN training throughput: our loop vs a loop written the way pytorch/examples' dcgan trains.

Both sides train the same architecture (``models.gan.networks``) at the same batch size, in this one
process, alternating in chunks so that a noisy machine slows both alike (the reference is
``bench/gan_steps.py: ReferenceLoop``). Ours is ``GanTrainer.train_step`` with the settings the
train configs use: the dataset held on the device as uint8, batches gathered by index,
channels_last, D frozen during G's update, bf16 autocast on CUDA (config defaults).

On CPU, when the CPU has native bf16 dot products, ours with bf16 autocast is timed in the same
alternation as a third row (a config option, ``gan.bf16: true``). On CUDA (``--device cuda``)
the run is budgeted for a lent GPU: the reference at one batch size, ours eager and replayed as
one CUDA graph per step at several batch sizes, optionally ``torch.compile`` (``--compile``, in
a child process that compiles while the parent measures and is cut off at the budget), and the
share of the GPU's bf16 peak reached (model FLOPs per image x images/s / ``--peak-tflops``).

    python bench/gan_throughput.py --quick
    python bench/gan_throughput.py --device cuda --budget-s 40

Results go to ``$OUT`` when set, else ``bench/results/``; the last line printed is one JSON
object with the headline figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

STARTED = time.monotonic()

import numpy as np  # noqa: E402 - STARTED is taken before the heavy imports
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gan_cuda import budgeted_run  # noqa: E402
from bench.gan_steps import ReferenceLoop, native_bf16_cpu, rate  # noqa: E402
from bench.machine import machine  # noqa: E402
from models.gan.config import GanTrainConfig  # noqa: E402
from models.gan.networks import GanArchitecture  # noqa: E402
from models.gan.training import GanTrainer  # noqa: E402
from models.runtime.device import configure_threads, resolve_device  # noqa: E402


def load_images(data_dir: str, n: int) -> tuple[np.ndarray, str]:
    """Fashion-MNIST train images if present, else random uint8 images of the same shape."""
    try:
        from models.data.sources import read_fashion_mnist

        src = read_fashion_mnist(data_dir, allow_download=False)
        return src.images[~src.test_mask][:n], "fashion-mnist"
    except Exception:  # noqa: BLE001 - the benchmark measures speed; content does not matter
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), "random-uint8"


def ours(
    images: np.ndarray, arch: GanArchitecture, batch: int, device: torch.device, **options: object
) -> GanTrainer:
    """Our trainer as the train configs set it up (channels_last), with ``options`` on top."""
    config = GanTrainConfig(
        architecture=arch,
        batch_size=batch,
        device=str(device),
        channels_last=True,
        progress=False,
        **options,
    )
    return GanTrainer(config, images, run_dir="/tmp/hiergan-bench")


def cpu_run(args: argparse.Namespace, images: np.ndarray, arch: GanArchitecture) -> dict:
    """Ours, (ours with bf16 where the CPU has it), reference: alternating chunks, one process."""
    device = torch.device("cpu")
    threads = configure_threads()
    loops = {"ours": ours(images, arch, args.batch_size, device).train_step}
    if native_bf16_cpu():
        loops["ours_bf16"] = ours(images, arch, args.batch_size, device, bf16=True).train_step
    ref = ReferenceLoop(arch, images, args.batch_size, args.workers, device)
    loops["ref"] = ref.step
    for step in loops.values():  # warm-up: allocators, worker start
        rate(step, args.batch_size, 0.0, device)
    chunks: dict[str, list[float]] = {name: [] for name in loops}
    order = list(loops)
    for r in range(args.rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:  # rotate who goes first
            chunks[name].append(rate(loops[name], args.batch_size, args.seconds, device))
    img_s = {name: statistics.median(v) for name, v in chunks.items()}
    result = {
        "ours_img_s": round(img_s["ours"], 1),
        "ref_img_s": round(img_s["ref"], 1),
        "ratio": round(img_s["ours"] / img_s["ref"], 3),
        "device": "cpu",
        "batch_size": args.batch_size,
        "threads": threads,
        "ref_workers": args.workers,
        "chunks": {name: [round(x) for x in v] for name, v in chunks.items()},
    }
    if "ours_bf16" in img_s:
        result["ours_bf16_img_s"] = round(img_s["ours_bf16"], 1)
        result["ratio_bf16"] = round(img_s["ours_bf16"] / img_s["ref"], 3)
    return result


def cpu_table(result: dict) -> str:
    """Markdown rows of a CPU run."""
    rows = [
        ("ours (GanTrainer.train_step, fp32, channels_last)", result["ours_img_s"], result["ratio"])
    ]
    if "ours_bf16_img_s" in result:
        bf16 = ("ours with `gan.bf16: true` (native bf16)", result["ours_bf16_img_s"])
        rows.append((*bf16, result["ratio_bf16"]))
    rows.append(("reference (pytorch/examples dcgan style)", result["ref_img_s"], 1.0))
    table = "| loop | images/s (median of chunks) | ÷ reference |\n|---|---|---|\n"
    return table + "".join(f"| {name} | {v:.0f} | {r:.2f} |\n" for name, v, r in rows)


def write_results(args: argparse.Namespace, result: dict, table: str) -> None:
    """``gan_throughput_<device>.md`` and ``.json`` under ``$OUT`` or ``--out``."""
    out = Path(os.environ.get("OUT") or args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"gan_throughput_{result['device']}"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{name}.md").write_text(
        f"# GAN training throughput ({result['device']})\n\n"
        f"Machine: {machine()}. Command: `python bench/gan_throughput.py "
        f"{' '.join(sys.argv[1:])}`\n\n{table}\nSettings and per-chunk figures: "
        f"`{json.dumps(result)}`\n"
    )


def main() -> None:
    """Run the comparison and print the JSON summary last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run (same code path)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None, help="CPU 128, CUDA 256")
    parser.add_argument("--batch-sizes", default="256,2048,8192", help="CUDA: ours at these")
    parser.add_argument("--width", type=int, default=64, help="g_width = d_width")
    parser.add_argument("--rounds", type=int, default=5, help="CPU: alternating rounds")
    parser.add_argument("--seconds", type=float, default=None, help="timed chunk: CPU 4, CUDA 1.5")
    parser.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    parser.add_argument("--compile", action="store_true", help="CUDA: also torch.compile ours")
    parser.add_argument("--no-graphs", action="store_true", help="CUDA: skip CUDA graphs")
    parser.add_argument("--budget-s", type=float, default=0, help="CUDA: wall-clock budget")
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="GPU bf16 dense peak")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--budgeted", action="store_true", help="CUDA phases, any device")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # compiled-run child
    args = parser.parse_args()
    device = resolve_device(args.device)
    args.device = str(device)
    on_gpu = device.type == "cuda"
    if args.batch_size is None:
        args.batch_size = 256 if on_gpu else 128
    if args.seconds is None:
        args.seconds = 1.0 if args.quick else (1.5 if on_gpu else 4.0)
    if args.quick:
        args.rounds = 3
    images, source = load_images(args.data_dir, 20000 if args.quick else 60000)
    arch = GanArchitecture(g_width=args.width, d_width=args.width)
    if on_gpu or args.budgeted:
        result, table = budgeted_run(args, images, arch, device, STARTED)
    else:
        result = cpu_run(args, images, arch)
        table = cpu_table(result)
    if args.child:
        print(json.dumps(result))
        return
    result |= {"width": args.width, "data": source, "wall_s": round(time.monotonic() - STARTED, 1)}
    print(table)
    if not args.quick:
        write_results(args, result, table)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
