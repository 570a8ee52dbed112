"""Data-parallel training with ``torch.distributed``: everything the loops need, in one place.

The loops (:mod:`models.gan.training`, :mod:`models.classifier.training`) ask :func:`current`
for a :class:`Dist` and use a handful of its methods; with one process it is :data:`SINGLE`,
whose methods do nothing, so the single-process path is unchanged.

- **Sampling.** Every rank draws the *global* batch's indices and noise from the same seeded
  generator and keeps its own contiguous slice (:meth:`Dist.shard`): the sampler state is the
  same on every rank and does not depend on the world size, so a checkpoint resumes with any
  number of processes, and two processes see exactly the images one would.
- **Gradients.** :meth:`Dist.wrap` puts a module in DistributedDataParallel (averaged
  gradients). Batch norm must see the global batch too: :func:`convert_batchnorm` uses
  ``SyncBatchNorm`` on GPUs and :class:`CrossRankBatchNorm` on CPUs (gloo), where
  ``SyncBatchNorm`` refuses to run. With both, a DDP step equals a one-process step on the same
  global batch up to floating-point summation order.
- **I/O.** Only rank 0 logs, writes checkpoints and sample grids (:attr:`Dist.is_main`); a resume
  reads the checkpoint on rank 0 and broadcasts its bytes (:meth:`Dist.broadcast_bytes`), so
  the other ranks need no access to where checkpoints live (pods on other nodes).
- **Failure.** The process group has a timeout (``distributed.timeout_s``): when a rank dies or
  hangs, the others' next collective fails within it, the launcher stops the job and the step
  fails, naming the timeout, rather than hanging.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn


class DistributedConfig(BaseModel):
    """How many processes train, and how they meet (``distributed:`` in the pipeline YAML)."""

    model_config = ConfigDict(extra="forbid")

    world_size: int = Field(1, ge=1, description="processes in all; 1 = no DDP")
    nodes: int = Field(1, ge=1, description="machines (Kubernetes pods); world_size / nodes each")
    launcher: Literal["torchrun", "kubernetes"] = Field(
        "torchrun",
        description="torchrun: processes on this machine; kubernetes: a multi-pod step (indexed "
        "Job + headless service) through ZenML's Kubernetes step operator",
    )
    backend: Literal["auto", "gloo", "nccl"] = Field("auto", description="auto: nccl on GPUs")
    timeout_s: float = Field(
        600.0, gt=0, description="a collective that waits longer (a rank died or hangs) fails"
    )
    sync_batchnorm: bool = Field(True, description="batch statistics over the global batch")
    job_root: str = Field(
        "checkpoints/jobs",
        description="results of distributed classifier fits (on Kubernetes: a shared volume)",
    )

    @model_validator(mode="after")
    def _nodes_divide(self) -> DistributedConfig:
        if self.world_size % self.nodes:
            raise ValueError(
                f"world_size {self.world_size} is not a multiple of nodes {self.nodes}"
            )
        return self

    @property
    def procs_per_node(self) -> int:
        """Processes on each machine."""
        return self.world_size // self.nodes


class DistributedError(RuntimeError):
    """A distributed run could not start, or a rank failed; the message says which and why."""


@dataclass(frozen=True)
class Dist:
    """This process's place in the job, and the few collective operations the loops use."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs and writes."""
        return self.rank == 0

    def local_batch(self, global_batch: int) -> int:
        """This rank's share of a global batch (which must divide evenly)."""
        if global_batch % self.world_size:
            raise DistributedError(
                f"batch size {global_batch} is not a multiple of world_size {self.world_size}"
            )
        return global_batch // self.world_size

    def shard(self, batch: Tensor) -> Tensor:
        """This rank's contiguous slice (along dim 0) of a global batch."""
        if not self.enabled:
            return batch
        n = self.local_batch(batch.shape[0])
        return batch[self.rank * n : (self.rank + 1) * n]

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over ranks of each value (for logging); every rank must call it."""
        if not self.enabled or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_comm())
        torch.distributed.all_reduce(t)
        return {k: float(v) / self.world_size for k, v in zip(keys, t.tolist(), strict=True)}

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel (gradients averaged over ranks), or as it is."""
        if not self.enabled:
            return module
        device = next(module.parameters()).device
        ids = [device.index if device.index is not None else self.local_rank]
        return _DDP(module, device_ids=ids if device.type == "cuda" else None)

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.enabled:
            torch.distributed.barrier()

    def broadcast_bytes(self, blob: bytes | None) -> bytes | None:
        """Rank 0's ``blob`` (None allowed) on every rank."""
        if not self.enabled:
            return blob
        device = _comm()
        size = torch.tensor([-1 if blob is None else len(blob)], dtype=torch.int64, device=device)
        torch.distributed.broadcast(size, 0)
        n = int(size.item())
        if n < 0:
            return None
        buf = torch.empty(n, dtype=torch.uint8, device=device)
        if self.is_main:
            buf.copy_(torch.frombuffer(bytearray(blob), dtype=torch.uint8))  # type: ignore[arg-type]
        torch.distributed.broadcast(buf, 0)
        return bytes(buf.cpu().numpy().tobytes())

    def load_on_main(self, load: Any) -> Any:
        """``load()`` on rank 0 (a checkpoint state or None), shared with every rank.

        The state travels as ``torch.save`` bytes and is read back with ``weights_only=True``.
        """
        if not self.enabled:
            return load()
        blob = None
        if self.is_main:
            state = load()
            if state is not None:
                buf = io.BytesIO()
                torch.save(state, buf)
                blob = buf.getvalue()
        blob = self.broadcast_bytes(blob)
        if blob is None:
            return None
        return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)

    def gather_json(self, value: Any) -> list[Any]:
        """Every rank's JSON-serialisable ``value``, in rank order (on every rank)."""
        if not self.enabled:
            return [value]
        blob = json.dumps(value).encode()
        device = _comm()
        sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(self.world_size)]
        torch.distributed.all_gather(sizes, torch.tensor([len(blob)], device=device))
        longest = max(int(s.item()) for s in sizes)
        mine = torch.zeros(longest, dtype=torch.uint8, device=device)
        mine[: len(blob)] = torch.frombuffer(bytearray(blob), dtype=torch.uint8).to(device)
        parts = [torch.zeros(longest, dtype=torch.uint8, device=device) for _ in sizes]
        torch.distributed.all_gather(parts, mine)
        return [
            json.loads(bytes(p[: int(s.item())].cpu().numpy().tobytes()))
            for p, s in zip(parts, sizes, strict=True)
        ]


SINGLE = Dist()
_OPTIONS = {"sync_batchnorm": True}  # set by init_process from the run's config


class _DDP(nn.parallel.DistributedDataParallel):
    """DDP that also lends the wrapped module's other methods (``features`` of a discriminator).

    Those calls bypass DDP's gradient hooks, which is right where they are used: the generator's
    feature-matching loss needs D's features, not D's gradients.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def current() -> Dist:
    """This process's :class:`Dist` (:data:`SINGLE` outside a distributed run)."""
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return SINGLE
    return Dist(
        rank=torch.distributed.get_rank(),
        world_size=torch.distributed.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def _comm() -> torch.device:
    """Where collective buffers live: the current GPU for NCCL, else the CPU."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_process(config: DistributedConfig) -> Dist:
    """Join the process group torchrun set up (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` ...).

    Raises:
        DistributedError: when not started by torchrun, or the world size differs from the
            config's.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise DistributedError("not started by torchrun: RANK and WORLD_SIZE are not set")
    world = int(os.environ["WORLD_SIZE"])
    if world != config.world_size:
        raise DistributedError(
            f"torchrun started {world} processes, the config asks for {config.world_size}"
        )
    backend = config.backend
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group(backend, timeout=timedelta(seconds=config.timeout_s))
    _OPTIONS["sync_batchnorm"] = config.sync_batchnorm
    return current()


def teardown() -> None:
    """Leave the process group (if any)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Batch norm over the global batch, in place of every ``BatchNorm2d`` of ``module``.

    ``SyncBatchNorm`` on GPUs, :class:`CrossRankBatchNorm` on CPUs. Parameters and buffers are
    kept (same objects), so optimisers and state dicts are unaffected. A no-op outside a
    distributed run or with ``sync_batchnorm: false``.
    """
    if not current().enabled or not _OPTIONS["sync_batchnorm"]:
        return module
    if next(module.parameters()).device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)

    def convert(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if type(child) in (nn.BatchNorm1d, nn.BatchNorm2d):
                setattr(parent, name, CrossRankBatchNorm.from_batchnorm(child))
            else:
                convert(child)

    convert(module)
    return module


class CrossRankBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch (for gloo on CPU).

    Per channel, the sums of ``x`` and ``x**2`` and the count are all-reduced with an
    autograd-aware collective, so the backward pass is the global batch's too.
    """

    @classmethod
    def from_batchnorm(cls, bn: nn.modules.batchnorm._BatchNorm) -> CrossRankBatchNorm:
        """The same layer (same parameter and buffer objects) with cross-rank statistics."""
        new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        new.weight, new.bias = bn.weight, bn.bias
        new.running_mean, new.running_var = bn.running_mean, bn.running_var
        new.num_batches_tracked = bn.num_batches_tracked
        new.train(bn.training)
        return new

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: Tensor) -> Tensor:
        """Normalise with the global batch's mean and variance (running stats in eval)."""
        if not self.training or not current().enabled:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        dims = (0, *range(2, x.dim()))
        shape = (1, c) + (1,) * (x.dim() - 2)
        local = torch.cat([x.sum(dims), (x * x).sum(dims), x.new_full((1,), x.numel() / c)])
        total = all_reduce(local)
        n = total[-1]
        mean = total[:c] / n
        var = total[c : 2 * c] / n - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = (
                    self.momentum
                    if self.momentum is not None
                    else 1.0 / float(self.num_batches_tracked)
                )
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                unbiased = var.detach() * (n / (n - 1)).detach()
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        y = (x - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y
