"""The machine a benchmark ran on, in the words its results table uses."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def machine() -> str:
    """CPU model, cores this process may use, GPU presence, torch version."""
    model = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{model}, {cores} cores, {gpu}, torch {torch.__version__}"
