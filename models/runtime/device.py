"""Device resolution and per-device speed settings, in one place."""

from __future__ import annotations

import os

import torch


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else as given.

    Raises:
        ValueError: when a CUDA device is asked for and none is available.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return resolved


def configure_threads(num_threads: int | None = None) -> int:
    """Use every core this process may run on for intra-op parallelism (CPU training).

    ``OMP_NUM_THREADS``, when set, is the user's word and wins over the core count (as it does
    for torch's own default): processes that share the cores — test workers, several jobs on one
    machine — each take their share instead of all of them, whose OpenMP threads would then wait
    on each other (measured: a calibration test 2 s alone, 136 s beside a 2-thread training).

    Returns:
        The thread count in effect.
    """
    omp = os.environ.get("OMP_NUM_THREADS", "")
    # under torchrun (which sets OMP_NUM_THREADS=1 itself) the ranks split the cores below
    if (num_threads is None or num_threads <= 0) and omp.isdigit() and int(omp) > 0:
        if "LOCAL_WORLD_SIZE" not in os.environ:
            num_threads = int(omp)
    if num_threads is None or num_threads <= 0:
        try:
            num_threads = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            num_threads = os.cpu_count() or 1
        # data-parallel processes on one machine share its cores (torchrun sets this)
        num_threads = max(1, num_threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    torch.set_num_threads(num_threads)
    return num_threads


def enable_fast_math(device: torch.device) -> None:
    """TF32 matmuls and cuDNN autotuning on CUDA (no effect on CPU)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def prepare_device(device: str = "auto", num_threads: int | None = None) -> torch.device:
    """The device a training or evaluation run uses, set up for speed.

    Resolves ``device`` (:func:`resolve_device`); on CPU, uses ``num_threads`` intra-op threads
    (default: every core this process may run on); on CUDA, TF32 and cuDNN autotuning.
    """
    resolved = resolve_device(device)
    if resolved.type == "cpu":
        configure_threads(num_threads)
    enable_fast_math(resolved)
    return resolved
