"""The GAN training loop: torch only, fast on a GPU, bearable on 2 CPU cores, resumable.

Speed choices (measured by ``bench/gan_throughput.py``): the whole uint8 dataset is held on the
device and batches are gathered by index (no DataLoader, no per-image transforms); on CUDA, bf16
autocast, channels_last and optionally ``torch.compile``; on CPU, every allowed core for
intra-op threads. Randomness comes from one seeded generator whose state is checkpointed, so a
resumed run continues the very same run.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.data.dataset import stratified_fraction
from models.data.streaming import StreamedImages
from models.gan.callbacks import Throughput, TrainerCallback, progress_bar, write_checkpoint
from models.gan.config import GanTrainConfig
from models.gan.networks import Discriminator, GanArchitecture, Generator, build_gan
from models.gan.objectives import StepBatch, build_objective
from models.runtime import distributed
from models.runtime.checkpoint import (
    load_checkpoint,
    restore_rng_state,
    rng_state,
)
from models.runtime.device import prepare_device, resolve_bf16
from models.runtime.tensors import frozen, to_model_range

logger = logging.getLogger(__name__)


@dataclass
class GanResult:
    """What a finished run returns."""

    generator: Generator
    discriminator: Discriminator
    steps: int
    resumed_from: int
    images_per_second: float
    history: list[dict[str, float]] = field(default_factory=list)
    labelled_indices: np.ndarray | None = None


class GanTrainer:
    """Trains a GAN on uint8 images held on the device, or streamed from shards.

    Under torchrun (``distributed.world_size > 1``) every rank runs this same loop on its slice
    of each global batch (:mod:`models.runtime.distributed`); rank 0 alone logs and writes.

    Args:
        config: the run's configuration.
        images: ``[N, H, W, C]`` uint8 training images, or a stream (``StreamedImages``).
        run_dir: where checkpoints and sample grids go.
        data_hash: the dataset's content hash (part of the run's identity).
        labels: ``[N]`` class labels, read only at ``labelled_indices`` (semi-supervised).
        labelled_indices: which labels may be used; default: a stratified ``label_fraction``.
        callbacks: logging hooks.
    """

    def __init__(
        self,
        config: GanTrainConfig,
        images: np.ndarray | StreamedImages,
        run_dir: str | Path,
        data_hash: str = "",
        labels: np.ndarray | None = None,
        labelled_indices: np.ndarray | None = None,
        callbacks: Sequence[TrainerCallback] = (),
    ) -> None:
        _check_images(images, config.architecture)
        self.dist = distributed.current()
        self.config = config
        self.run_dir = Path(run_dir)
        self.run_key = config.run_key(data_hash)
        self.callbacks = list(callbacks) if self.dist.is_main else []  # rank 0 alone logs
        self.device = prepare_device(config.device, config.num_threads)
        on_cuda = self.device.type == "cuda"
        self.bf16 = resolve_bf16(config.bf16, self.device)
        self.channels_last = on_cuda if config.channels_last is None else config.channels_last
        self.objective = build_objective(config.mode, config.loss)

        self.stream = images if isinstance(images, StreamedImages) else None
        if self.stream is not None:
            self.stream.start(self.dist.local_batch(config.batch_size), config.seed, self.dist)
        else:
            # [N, H, W, C] uint8 -> [N, C, H, W] uint8 on the device, once
            self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
            self.images = self.images.contiguous().to(self.device)
        self.num_images = len(images)
        self.labelled_indices: np.ndarray | None = None
        self.labelled_images = self.labelled_labels = None
        if self.objective.needs_labels:
            self._hold_labelled(labels, labelled_indices)
        elif config.architecture.num_classes:
            raise ValueError("unsupervised mode needs architecture.num_classes = 0")
        self._build_networks()
        self.rng = torch.Generator(device=self.device)
        self.rng.manual_seed(config.seed)
        fixed = torch.Generator().manual_seed(config.seed + 1)
        self.fixed_noise = torch.randn(64, config.architecture.latent_dim, generator=fixed).to(
            self.device
        )
        self.step = 0
        self._perm = torch.randperm(self.num_images, generator=self.rng, device=self.device)
        self._pos = 0

    def _hold_labelled(self, labels: np.ndarray | None, indices: np.ndarray | None) -> None:
        """Put the images and labels the objective may use on the device (and nothing more)."""
        cfg = self.config
        if self.stream is not None:  # a stratified labelled subset, read once into memory
            self.labelled_images, self.labelled_labels = self.stream.labelled(
                cfg.label_fraction, self.device
            )
            self.labelled_indices = np.arange(len(self.labelled_labels))
            return
        if labels is None:
            raise ValueError(f"{cfg.mode} mode needs labels")
        if cfg.architecture.num_classes < 1 + int(labels.max()):
            raise ValueError(
                f"architecture.num_classes={cfg.architecture.num_classes}, "
                f"labels go up to {labels.max()}"
            )
        if indices is None:
            indices = stratified_fraction(labels, cfg.label_fraction, cfg.seed)
        self.labelled_indices = np.asarray(indices, dtype=np.int64)
        self.labelled_images = self.images[torch.from_numpy(self.labelled_indices).to(self.device)]
        self.labelled_labels = torch.from_numpy(labels[self.labelled_indices].astype(np.int64)).to(
            self.device
        )

    def _build_networks(self) -> None:
        """Both networks (seeded), their optimisers, and the compiled step wrappers."""
        cfg = self.config
        self.generator, self.discriminator = build_gan(cfg.architecture, cfg.seed)
        for net in (self.generator, self.discriminator):
            net.to(self.device)
            if self.channels_last:
                net.to(memory_format=torch.channels_last)
            distributed.convert_batchnorm(net)  # global-batch statistics under DDP
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr_g, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr_d, betas=cfg.betas)
        # DDP (averaged gradients), then compile, wrap the originals; checkpoints use the originals
        g, d = self.dist.wrap(self.generator), self.dist.wrap(self.discriminator)
        self.g_step: nn.Module = torch.compile(g) if cfg.compile else g
        self.d_step: nn.Module = torch.compile(d) if cfg.compile else d

    # ------------------------------------------------------------------ batches
    def _next_indices(self, batch_size: int) -> Tensor:
        """Epoch-wise shuffled indices; a new permutation when the current one runs out."""
        if self._pos + batch_size > len(self._perm):
            self._perm = torch.randperm(self.num_images, generator=self.rng, device=self.device)
            self._pos = 0
        idx = self._perm[self._pos : self._pos + batch_size]
        self._pos += batch_size
        return idx

    def _real_batch(self, batch_size: int) -> Tensor:
        """This rank's share of the next global batch of real images, uint8 on the device."""
        if self.stream is not None:
            return self.stream.next_batch(self.device, self.step)[0]
        return self.images[self.dist.shard(self._next_indices(batch_size))]

    def _prepare(self, images_u8: Tensor) -> Tensor:
        x = to_model_range(images_u8)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _autocast(self) -> Any:
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, Tensor]:
        """One discriminator update and one generator update on a freshly drawn batch."""
        return self.update(*self.draw_batch())

    def draw_batch(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """This step's inputs: real images, latent codes, the labelled batch and its labels.

        Every random draw of a step happens here, so :meth:`update` is a fixed computation on
        its inputs (a CUDA graph can replay it; ``bench/gan_throughput.py``).
        """
        cfg = self.config
        batch = min(cfg.batch_size, self.num_images)
        real = self._prepare(self._real_batch(batch))
        z = torch.randn(batch, cfg.architecture.latent_dim, device=self.device, generator=self.rng)
        z = self.dist.shard(z)[: len(real)]  # the global batch's noise: as one process draws it
        labelled = labels = None
        if self.labelled_images is not None:
            pick = torch.randint(
                len(self.labelled_images),
                (min(cfg.labelled_batch_size, len(self.labelled_images)),),
                device=self.device,
                generator=self.rng,
            )
            pick = self.dist.shard(pick)
            labelled, labels = self._prepare(self.labelled_images[pick]), self.labelled_labels[pick]
        return real, z, labelled, labels

    def update(
        self, real: Tensor, z: Tensor, labelled: Tensor | None = None, labels: Tensor | None = None
    ) -> dict[str, Tensor]:
        """One discriminator update and one generator update on these inputs."""
        with self._autocast():
            fake = self.g_step(z)
        # Discriminator: the fake batch is detached, so this backward stops at D.
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            d_loss, d_terms = self.objective.discriminator_loss(
                self.d_step, StepBatch(real, fake.detach(), labelled, labels)
            )
        d_loss.backward()
        self.opt_d.step()
        # Generator: through the updated D, reusing this step's fakes (as pytorch/examples).
        # D's parameters are frozen meanwhile: its weight gradients here would be thrown away
        # (zeroed before D's next update); the graph built while frozen has no edges to them.
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast(), frozen(self.discriminator):
            g_loss, g_terms = self.objective.generator_loss(self.d_step, StepBatch(real, fake))
        g_loss.backward()
        self.opt_g.step()
        return d_terms | g_terms

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs."""
        return {
            "run_key": self.run_key,
            "step": self.step,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": rng_state(self.rng),
            "perm": self._perm.cpu(),
            "pos": self._pos,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        restore_rng_state(self.rng, state["rng"])
        self._perm = state["perm"].to(self.device)
        self._pos = int(state["pos"])
        self.step = int(state["step"])

    def checkpoint(self) -> Path:
        """Write the checkpoint now (the loop asks rank 0 only)."""
        return write_checkpoint(self.state_dict(), self.run_dir, self.step, self.callbacks)

    def sample_grid(self) -> bytes:
        """PNG of the generator's images for the fixed noise (eval mode: BN stats untouched)."""
        from torchvision.utils import make_grid

        self.generator.eval()
        with torch.no_grad():
            images = self.generator(self.fixed_noise).float().cpu()
        self.generator.train()
        grid = make_grid(images, nrow=8, normalize=True, value_range=(-1, 1), pad_value=1.0)
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(
            buf, "PNG"
        )
        return buf.getvalue()

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = True) -> GanResult:
        """Train to ``config.steps``, resuming from the run directory's checkpoint if any."""
        cfg = self.config
        resumed_from = self._resume() if resume else 0
        history: list[dict[str, float]] = []
        bar = progress_bar(cfg.progress and self.dist.is_main, cfg.steps, self.step)
        clock = Throughput(min(cfg.batch_size, self.num_images))
        warmup = min(5, max(0, cfg.steps - self.step - 1))  # compile/allocator warm-up is not timed
        while self.step < cfg.steps:
            terms = self.train_step()
            self.step += 1
            if self.step - resumed_from == warmup:
                self._sync()
                clock.start()
            else:
                clock.tick()
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                self._sync()
                history.append(self._log(terms, clock.images_per_second(), bar))
            last = self.step == cfg.steps
            if self.dist.is_main and (self.step % cfg.checkpoint_every == 0 or last):
                self.checkpoint()
            if self.dist.is_main and (self.step % cfg.sample_every == 0 or last):
                self._write_samples()
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        self._sync()
        return GanResult(
            generator=self.generator,
            discriminator=self.discriminator,
            steps=self.step,
            resumed_from=resumed_from,
            images_per_second=clock.images_per_second(),
            history=history,
            labelled_indices=self.labelled_indices,
        )

    def _resume(self) -> int:
        """Load the run directory's checkpoint of this run, if any; the step it resumes from."""
        state = self.dist.load_on_main(lambda: load_checkpoint(self.run_dir, self.run_key))
        if state is None:
            return 0
        self.load_state_dict(state)
        logger.info("Resuming GAN run %s at step %d", self.run_key, self.step)
        return self.step

    def _log(self, terms: dict[str, Tensor], img_s: float, bar: Any) -> dict[str, float]:
        """Hand this step's losses and images/s to the callbacks and the progress bar."""
        metrics = self.dist.mean({k: float(v.detach()) for k, v in terms.items()})  # global batch
        metrics |= {"images_per_s": img_s}
        for cb in self.callbacks:
            cb.on_log(self.step, metrics)
        if bar is not None:
            bar.set_postfix(
                img_s=f"{img_s:.0f}", d=f"{metrics['d_loss']:.3f}", g=f"{metrics['g_loss']:.3f}"
            )
        return {"step": float(self.step)} | metrics

    def _write_samples(self) -> None:
        """The fixed-noise grid of this step, on disk and to the callbacks (rank 0 only)."""
        png = self.sample_grid()
        samples = self.run_dir / "samples"
        samples.mkdir(parents=True, exist_ok=True)
        (samples / f"step_{self.step:07d}.png").write_bytes(png)
        for cb in self.callbacks:
            cb.on_samples(self.step, png)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _check_images(images: np.ndarray | StreamedImages, arch: GanArchitecture) -> None:
    """Raise naming what is wrong when ``images`` are not uint8 ``[N, H, W, C]`` of ``arch``."""
    if isinstance(images, StreamedImages):  # decoded to the manifest's shape
        images = np.zeros((1, *images.image_shape), np.uint8)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    if images.shape[1:] != (arch.image_size, arch.image_size, arch.channels):
        raise ValueError(
            f"images are {images.shape[1:]} but the architecture expects "
            f"{(arch.image_size, arch.image_size, arch.channels)}"
        )
