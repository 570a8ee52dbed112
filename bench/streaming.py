"""Streamed shards vs the in-memory dataset: images/s, and peak memory as the dataset grows.

A generated image folder (64 px JPEGs, 10 classes) at two sizes, each several times the shuffle
buffer, is ingested both ways: written as tar shards + a manifest (files packed as they are), and
decoded into one in-memory uint8 array (the in-memory path). For each (path, size) a fresh
process measures

- **loader images/s**: one epoch of the train split in batches of 256, uint8 ``[B, C, H, W]``
  tensors ready for a training step: streamed (``--workers`` loader processes decode JPEGs behind
  a shuffle buffer) vs gathered by index from the in-memory array (the GAN loop's way);
- **training**: ``--steps`` steps of the GAN loop (``GanTrainer``, a small 64 px DCGAN) fed each
  way, and its images/s;
- **peak RSS** of the training process, and of the process with its loader workers (sampled
  every 20 ms; a worker's pages shared with the parent are counted twice, so the sum is an upper
  bound).

Streamed memory must stay flat as the dataset grows (it holds the shuffle buffer and a few
batches); the in-memory path grows with the dataset.

    python bench/streaming.py --quick           # 2 sizes of a few thousand images, < 2 min
    python bench/streaming.py                   # 25k and 100k images -> bench/results/

The last line printed is one JSON object with the headline figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine  # noqa: E402

CLASSES = 10


def make_folder(root: Path, n: int, size: int = 64, seed: int = 0) -> None:
    """``n`` JPEGs of ``size`` px in ``root/class<k>/``: class colour, stripes and noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for k in range(CLASSES):
        (root / f"class{k}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        k = i % CLASSES
        hue = np.array([(k * 67) % 256, (k * 151 + 80) % 256, (k * 29 + 160) % 256], float)
        stripes = np.sin((xx if k % 2 else yy) * (0.2 + 0.05 * k) + rng.uniform(0, 6.3))
        img = hue * (0.6 + 0.3 * stripes[..., None]) + rng.normal(0, 20, (size, size, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            root / f"class{k}" / f"{i:07d}.jpg", quality=90
        )


def dataset_config(folder: Path, args: argparse.Namespace, storage: str) -> dict:
    """The ``dataset:`` section for the generated folder, stored ``storage``-wise."""
    return {
        "source": "image-folder",
        "data_dir": str(folder),
        "image_size": 64,
        "channels": 3,
        "storage": storage,
        "val_fraction": 0.05,
        "test_fraction": 0.05,
        "shards": {
            "max_images_per_shard": 5000,
            "shuffle_buffer": args.shuffle_buffer,
            "workers": args.workers,
        },
    }


class PeakRss:
    """The largest RSS of this process, and of this process plus its children, while running."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.peak_self = self.peak_tree = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                own = self.proc.memory_info().rss
                kids = sum(c.memory_info().rss for c in self.proc.children(recursive=True))
            except psutil.Error:
                continue
            self.peak_self = max(self.peak_self, own)
            self.peak_tree = max(self.peak_tree, own + kids)
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(args: argparse.Namespace) -> dict:
    """One (path, size) measurement in this (fresh) process."""
    import torch

    from models.data.ingest import DatasetConfig, build_dataset
    from models.data.sharded import ShardedDataset
    from models.gan.config import GanTrainConfig
    from models.gan.training import GanTrainer
    from models.runtime.device import configure_threads
    from models.runtime.distributed import Dist

    configure_threads(args.threads)
    out: dict = {"path": args.measure, "images": args.size}
    with PeakRss() as rss:
        started = time.perf_counter()
        if args.measure == "stream":
            data = ShardedDataset.open(args.uri, args.shuffle_buffer, args.workers)
            train = data.streamed("train")
            n = len(train)
        else:
            cfg = DatasetConfig(**dataset_config(Path(args.folder), args, "memory"))
            data = build_dataset(cfg)
            train_x, _ = data.split("train")
            n = len(train_x)
        out["open_or_decode_s"] = round(time.perf_counter() - started, 2)
        out["train_images"] = n
        steps = n // args.batch
        if args.measure == "stream":
            train.start(args.batch, seed=0, dist=Dist())
            batch, _ = train.next_batch(torch.device("cpu"))  # workers up, buffer filled
            started = time.perf_counter()
            for _ in range(steps - 1):
                batch, _ = train.next_batch(torch.device("cpu"))
            elapsed = time.perf_counter() - started
            source = train  # the same stream: the trainer restarts it
        else:
            x = torch.from_numpy(train_x).permute(0, 3, 1, 2).contiguous()
            gen = torch.Generator().manual_seed(0)
            started = time.perf_counter()
            perm = torch.randperm(n, generator=gen)
            for b in range(steps - 1):
                batch = x[perm[b * args.batch : (b + 1) * args.batch]]
            elapsed = time.perf_counter() - started
            source = train_x
        assert batch.shape[1:] == (3, 64, 64), batch.shape
        out["loader_images_per_s"] = round((steps - 1) * args.batch / elapsed, 1)
        config = GanTrainConfig(
            architecture={"image_size": 64, "channels": 3, "latent_dim": 32, "g_width": 16,
                          "d_width": 16},
            steps=args.steps, batch_size=args.batch, device="cpu", progress=False,
            checkpoint_every=10**6, sample_every=10**6, log_every=10**6,
        )  # fmt: skip
        with tempfile.TemporaryDirectory() as run_dir:
            result = GanTrainer(config, source, run_dir).fit(resume=False)
        out["train_images_per_s"] = round(result.images_per_second, 1)
    out["peak_rss_mb"] = round(rss.peak_self / 2**20, 1)
    out["peak_rss_with_workers_mb"] = round(rss.peak_tree / 2**20, 1)
    out["max_rss_mb_getrusage"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    return out


def run_size(n: int, args: argparse.Namespace, work: Path) -> tuple[list[dict], dict]:
    """Generate ``n`` images, ingest them as shards, measure both paths in fresh processes."""
    from models.data.ingest import DatasetConfig
    from models.data.sharded import build_sharded_dataset

    folder = work / f"images-{n}"
    started = time.perf_counter()
    make_folder(folder, n)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    cfg = DatasetConfig(**dataset_config(folder, args, "shards"))
    data = build_sharded_dataset(cfg, str(work / "shards"))
    ingest = {
        "images": n,
        "generate_s": round(generated, 1),
        "write_shards_s": round(time.perf_counter() - started, 1),
        "shards": sum(len(data.manifest.splits[s].shards) for s in ("train", "val", "test")),
        "shard_mb": round(
            sum(sh.bytes for s in data.manifest.splits.values() for sh in s.shards) / 2**20, 1
        ),
    }
    rows = []
    for path in ("stream", "memory"):
        cmd = [
            sys.executable, __file__, "--measure", path, "--size", str(n),
            "--folder", str(folder), "--uri", data.uri, "--steps", str(args.steps),
            "--batch", str(args.batch), "--workers", str(args.workers),
            "--shuffle-buffer", str(args.shuffle_buffer), "--threads", str(args.threads),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{path} measurement failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"  {path:6s} {n:7d} images: {rows[-1]}", flush=True)
    return rows, ingest


def report(rows: list[dict], ingests: list[dict], args: argparse.Namespace) -> str:
    """The Markdown table of bench/results/streaming.md."""
    lines = [
        "# Streamed shards vs in-memory dataset",
        "",
        f"Machine: {machine()}. Command: `python bench/streaming.py"
        f"{' --quick' if args.quick else ''}`. 64 px RGB JPEGs, 10 classes; train split = 90 %;"
        f" batch {args.batch}; shuffle buffer {args.shuffle_buffer} per worker; "
        f"{args.workers} loader workers; {args.threads} torch threads; GAN loop {args.steps} "
        "steps (latent 32, widths 16). Every row is a fresh process.",
        "",
        "| path | images | loader images/s | GAN loop images/s | peak RSS (process) MB | "
        "peak RSS (+ workers) MB | open / decode s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['path']} | {r['images']:,} | {r['loader_images_per_s']:,.0f} | "
            f"{r['train_images_per_s']:,.0f} | {r['peak_rss_mb']:,.0f} | "
            f"{r['peak_rss_with_workers_mb']:,.0f} | {r['open_or_decode_s']} |"
        )
    lines += ["", "Ingestion (shards written once; files packed as they are, not decoded):", ""]
    lines += ["| images | generate s | write shards s | shards | MB |", "|---|---|---|---|---|"]
    for i in ingests:
        lines.append(
            f"| {i['images']:,} | {i['generate_s']} | {i['write_shards_s']} | {i['shards']} | "
            f"{i['shard_mb']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run both sizes (or, with the hidden ``--measure``, one measurement) and report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs=2, default=None)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--shuffle-buffer", type=int, default=None)
    parser.add_argument("--out", default=os.environ.get("OUT") or "bench/results")
    parser.add_argument("--measure", choices=["stream", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sizes = args.sizes or ([3000, 12000] if args.quick else [25000, 100000])
    args.steps = args.steps or (10 if args.quick else 40)
    args.shuffle_buffer = args.shuffle_buffer or (500 if args.quick else 2000)
    if args.measure:
        print(json.dumps(measure(args)))
        return
    rows, ingests = [], []
    with tempfile.TemporaryDirectory(prefix="hiergan-streaming-") as tmp:
        for n in args.sizes:
            r, i = run_size(n, args, Path(tmp))
            rows += r
            ingests.append(i)
    by = {(r["path"], r["images"]): r for r in rows}
    small, large = args.sizes
    headline = {
        "machine": machine(),
        "sizes": args.sizes,
        "stream_loader_images_per_s": by[("stream", large)]["loader_images_per_s"],
        "memory_loader_images_per_s": by[("memory", large)]["loader_images_per_s"],
        "stream_peak_rss_mb": [by[("stream", n)]["peak_rss_mb"] for n in args.sizes],
        "memory_peak_rss_mb": [by[("memory", n)]["peak_rss_mb"] for n in args.sizes],
        "stream_rss_growth_mb": round(
            by[("stream", large)]["peak_rss_mb"] - by[("stream", small)]["peak_rss_mb"], 1
        ),
        "memory_rss_growth_mb": round(
            by[("memory", large)]["peak_rss_mb"] - by[("memory", small)]["peak_rss_mb"], 1
        ),
    }
    if not args.quick:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "streaming.md").write_text(report(rows, ingests, args))
        (out / "streaming.json").write_text(
            json.dumps({"headline": headline, "rows": rows, "ingest": ingests}, indent=1)
        )
    print(json.dumps(headline))


if __name__ == "__main__":
    main()
