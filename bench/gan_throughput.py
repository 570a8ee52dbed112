"""GAN training throughput: our loop vs a loop written the way pytorch/examples' dcgan trains.

Both sides train the same architecture (``models.gan.networks``) at the same batch size, in this one
process, alternating in chunks so that a noisy machine slows both alike. The reference follows
pytorch/examples/dcgan/main.py: a ``DataLoader`` over a dataset with per-image
``ToTensor``/``Normalize`` transforms (``--workers`` processes, 2 as there), fp32, contiguous
tensors, a sigmoid + ``BCELoss`` discriminator with separate real and fake backward passes.
Ours is ``GanTrainer.train_step``: the dataset held on the device as uint8, batches gathered
by index, channels_last, bf16 autocast on CUDA (config defaults; ``--compile`` adds
``torch.compile``).

    python bench/gan_throughput.py --quick
    python bench/gan_throughput.py --device cuda --batch-size 256

The last line printed is one JSON object with the headline figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.gan.config import GanTrainConfig
from models.gan.networks import GanArchitecture, build_gan
from models.gan.training import GanTrainer
from models.runtime.device import configure_threads, resolve_device


def load_images(data_dir: str, n: int) -> tuple[np.ndarray, str]:
    """Fashion-MNIST train images if present, else random uint8 images of the same shape."""
    try:
        from models.data.sources import read_fashion_mnist

        src = read_fashion_mnist(data_dir, allow_download=False)
        return src.images[~src.test_mask][:n], "fashion-mnist"
    except Exception:  # noqa: BLE001 - the benchmark measures speed; content does not matter
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), "random-uint8"


class ExamplesStyleDataset(torch.utils.data.Dataset):
    """Per-item PIL image + torchvision transforms, as torchvision's MNIST-family datasets do."""

    def __init__(self, images: np.ndarray) -> None:
        import torchvision.transforms as T

        self.images = images
        self.transform = T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.5,))])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        img = Image.fromarray(self.images[i][..., 0], mode="L")
        return self.transform(img), 0


class ReferenceLoop:
    """The training loop of pytorch/examples/dcgan/main.py, on our architecture."""

    def __init__(
        self,
        arch: GanArchitecture,
        images: np.ndarray,
        batch_size: int,
        workers: int,
        device: torch.device,
    ) -> None:
        self.device = device
        self.net_g, self.net_d = build_gan(arch, seed=0)
        self.net_g.to(device)
        self.net_d.to(device)
        self.criterion = nn.BCELoss()
        self.opt_d = torch.optim.Adam(self.net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_g = torch.optim.Adam(self.net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.loader = torch.utils.data.DataLoader(
            ExamplesStyleDataset(images),
            batch_size=batch_size,
            shuffle=True,
            num_workers=workers,
            drop_last=True,
            persistent_workers=workers > 0,
        )
        self.iterator = iter(self.loader)
        self.nz = arch.latent_dim

    def _batch(self) -> torch.Tensor:
        try:
            return next(self.iterator)[0]
        except StopIteration:
            self.iterator = iter(self.loader)
            return next(self.iterator)[0]

    def step(self) -> None:
        """One D and one G update, line for line as in the example."""
        real = self._batch().to(self.device)
        b = real.size(0)
        self.net_d.zero_grad()
        label = torch.full((b,), 1.0, dtype=torch.float, device=self.device)
        output = torch.sigmoid(self.net_d(real)).view(-1)
        err_d_real = self.criterion(output, label)
        err_d_real.backward()
        noise = torch.randn(b, self.nz, 1, 1, device=self.device)
        fake = self.net_g(noise)
        label.fill_(0.0)
        output = torch.sigmoid(self.net_d(fake.detach())).view(-1)
        err_d_fake = self.criterion(output, label)
        err_d_fake.backward()
        self.opt_d.step()
        self.net_g.zero_grad()
        label.fill_(1.0)
        output = torch.sigmoid(self.net_d(fake)).view(-1)
        err_g = self.criterion(output, label)
        err_g.backward()
        self.opt_g.step()


def timed(step_fn, steps: int, device: torch.device) -> float:
    """Seconds for ``steps`` calls, synchronised on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step_fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def sweep(
    images: np.ndarray, arch: GanArchitecture, args: argparse.Namespace, device: torch.device
) -> list[tuple[int, bool, bool, int, float]]:
    """Our loop's images/s for thread count x channels_last x bf16 x batch size."""
    rows = []
    max_threads = configure_threads()
    for threads in sorted({1, max_threads}):
        for channels_last in (False, True):
            for bf16 in (False, True):
                for batch in (64, 128, 256):
                    torch.set_num_threads(threads)
                    cfg = GanTrainConfig(
                        architecture=arch,
                        batch_size=batch,
                        device=str(device),
                        bf16=bf16,
                        channels_last=channels_last,
                        num_threads=threads,
                        progress=False,
                    )
                    trainer = GanTrainer(cfg, images, run_dir="/tmp/hiergan-bench")
                    timed(trainer.train_step, 3, device)
                    seconds = timed(trainer.train_step, args.steps, device)
                    rows.append((threads, channels_last, bf16, batch, args.steps * batch / seconds))
                    print(
                        f"sweep threads={threads} channels_last={channels_last} bf16={bf16} "
                        f"batch={batch}: {rows[-1][-1]:.0f} img/s",
                        flush=True,
                    )
    torch.set_num_threads(max_threads)
    return rows


def main() -> None:
    """Run the comparison and print the JSON summary last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a reduced run (same code path)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--width", type=int, default=64, help="g_width = d_width")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30, help="steps per chunk")
    parser.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    parser.add_argument("--compile", action="store_true", help="torch.compile our networks")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument(
        "--sweep", action="store_true", help="also time our loop under CPU settings combinations"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps = 3, 10

    device = resolve_device(args.device)
    threads = configure_threads() if device.type == "cpu" else torch.get_num_threads()
    images, source = load_images(args.data_dir, 20000 if args.quick else 60000)
    arch = GanArchitecture(g_width=args.width, d_width=args.width)
    config = GanTrainConfig(
        architecture=arch,
        batch_size=args.batch_size,
        device=str(device),
        compile=args.compile,
        channels_last=True,
        progress=False,
    )
    ours = GanTrainer(config, images, run_dir="/tmp/hiergan-bench")
    ref = ReferenceLoop(arch, images, args.batch_size, args.workers, device)

    for fn in (ours.train_step, ref.step):  # warm-up: allocators, worker start, compilation
        timed(fn, 3 if args.quick else 5, device)
    ours_s, ref_s = [], []
    for r in range(args.rounds):
        pair = [(ours.train_step, ours_s), (ref.step, ref_s)]
        for fn, out in pair if r % 2 == 0 else pair[::-1]:  # alternate who goes first
            out.append(args.steps * args.batch_size / timed(fn, args.steps, device))
    ours_img_s, ref_img_s = statistics.median(ours_s), statistics.median(ref_s)
    result = {
        "ours_img_s": round(ours_img_s, 1),
        "ref_img_s": round(ref_img_s, 1),
        "ratio": round(ours_img_s / ref_img_s, 3),
        "device": device.type,
        "batch_size": args.batch_size,
        "width": args.width,
        "threads": threads,
        "bf16": ours.bf16,
        "channels_last": ours.channels_last,
        "compile": args.compile,
        "ref_workers": args.workers,
        "data": source,
        "rounds": args.rounds,
        "steps_per_chunk": args.steps,
    }
    sweep_rows = sweep(images, arch, args, device) if args.sweep else []
    print(f"ours per chunk: {[round(x) for x in ours_s]}")
    print(f"ref  per chunk: {[round(x) for x in ref_s]}")
    if not args.quick:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        name = (
            torch.cuda.get_device_name()
            if device.type == "cuda"
            else f"{platform.machine()} CPU, {os.cpu_count()} cores"
        )
        table = (
            f"# GAN training throughput ({device.type})\n\n"
            f"Machine: {name}, {threads} threads, torch {torch.__version__}. "
            f"Command: `python bench/gan_throughput.py {' '.join(sys.argv[1:])}`\n\n"
            "| loop | images/s (median of chunks) |\n|---|---|\n"
            f"| ours (GanTrainer.train_step) | {ours_img_s:.0f} |\n"
            f"| reference (pytorch/examples dcgan style) | {ref_img_s:.0f} |\n"
            f"| ratio | {ours_img_s / ref_img_s:.2f} |\n\n"
            f"Settings: {json.dumps(result)}\n"
        )
        if sweep_rows:
            table += (
                "\n## Our loop under other settings\n\n"
                "| threads | channels_last | bf16 | batch | images/s |\n|---|---|---|---|---|\n"
            )
            table += "".join(
                f"| {t} | {c} | {b} | {bs} | {v:.0f} |\n" for t, c, b, bs, v in sweep_rows
            )
        (out / f"gan_throughput_{device.type}.md").write_text(table)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
