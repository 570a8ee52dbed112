"""Ways to run and time one GAN training step, shared by ``bench/gan_throughput.py``.

* :class:`ReferenceLoop`: the training loop of pytorch/examples/dcgan/main.py on our
  architecture (a ``DataLoader`` with per-image ``ToTensor``/``Normalize``, fp32, contiguous
  tensors, a sigmoid + ``BCELoss`` discriminator with separate real and fake backward passes).
* :class:`GraphedStep`: our ``GanTrainer.update`` captured once in a CUDA graph and replayed;
  the batch is drawn by ``GanTrainer.draw_batch`` outside the graph and copied into static
  inputs, so the run is the same computation as the eager loop, minus the kernel launches.
* :func:`rate`: images/s of a step function over a wall-clock window, synchronised on CUDA.
* :func:`flops_per_image`: the model FLOPs of one training step (forward and backward of both
  networks, as our step does them), counted by ``torch.utils.flop_counter``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from models.gan.networks import GanArchitecture, build_gan
from models.gan.training import GanTrainer


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
        self.batch_size = batch_size

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


class GraphedStep:
    """``trainer.update`` captured in one CUDA graph (both updates, both optimiser steps).

    The optimisers must have been built with ``capturable=True`` (see :func:`capturable`).
    """

    def __init__(self, trainer: GanTrainer, warmup: int = 3) -> None:
        self.trainer = trainer
        inputs = trainer.draw_batch()
        self.static = [t.clone() if t is not None else None for t in inputs]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up on a side stream, as the CUDA graph docs do
            for _ in range(warmup):
                trainer.update(*self.static)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.terms = trainer.update(*self.static)

    def step(self) -> dict[str, Tensor]:
        """Draw a batch as the eager loop does, copy it into the graph's inputs, replay."""
        for target, value in zip(self.static, self.trainer.draw_batch(), strict=True):
            if target is not None:
                target.copy_(value, non_blocking=True)
        self.graph.replay()
        return self.terms


def capturable(trainer: GanTrainer) -> GanTrainer:
    """Switch the trainer's Adam optimisers to their graph-capturable form (before any step)."""
    for opt in (trainer.opt_d, trainer.opt_g):
        for group in opt.param_groups:
            group["capturable"] = True
    return trainer


def rate(step: Callable[[], object], batch: int, seconds: float, device: torch.device) -> float:
    """Images per second of ``step`` over at least ``seconds`` (and at least 3 steps)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    sync()
    n, start = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < seconds:
        step()
        n += 1
        if n % 8 == 0:
            sync()
    sync()
    return n * batch / (time.perf_counter() - start)


def flops_per_image(trainer: GanTrainer) -> float:
    """FLOPs of one of ``trainer``'s steps divided by its batch size (one step is run)."""
    from torch.utils.flop_counter import FlopCounterMode

    real, z, labelled, labels = trainer.draw_batch()
    with FlopCounterMode(display=False) as counter:
        trainer.update(real, z, labelled, labels)
    return counter.get_total_flops() / len(real)


def native_bf16_cpu() -> bool:
    """Whether this CPU has bf16 dot-product instructions (oneDNN's test)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
