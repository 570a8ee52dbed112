"""Training checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint holds networks, optimisers, the step, RNG states and the sampler's position: enough
for a resumed run to continue the very same run (bitwise on CPU).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FILE = "checkpoint.pt"


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable or belongs to another run."""


def save_checkpoint(state: dict[str, Any], directory: str | Path) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt`` via a temporary file and a rename.

    A process killed mid-write leaves the previous checkpoint intact.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_FILE
    tmp = directory / f".{CHECKPOINT_FILE}.{os.getpid()}.partial"
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(directory: str | Path, expected_key: str) -> dict[str, Any] | None:
    """Read the checkpoint in ``directory``, or None when there is none.

    Args:
        directory: where :func:`save_checkpoint` wrote.
        expected_key: the run's identity (config and data hash); a checkpoint of another run
            is refused rather than silently continued.

    Raises:
        CheckpointError: when the file is unreadable or of another run.
    """
    path = Path(directory) / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling/IO failure is "unreadable"
        raise CheckpointError(f"checkpoint {path} is unreadable: {err}") from err
    if state.get("run_key") != expected_key:
        raise CheckpointError(
            f"checkpoint {path} belongs to another run (key {state.get('run_key')!r}, "
            f"expected {expected_key!r}); delete it or choose another checkpoint directory"
        )
    return state


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG the loop touches: the loop's own generator, torch's, numpy's and Python's."""
    state: dict[str, Any] = {
        "loop": generator.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(np.frombuffer(_numpy_state_bytes(), dtype=np.uint8).copy()),
        "python": list(random.getstate()[1]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(generator: torch.Generator, state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    generator.set_state(state["loop"])
    torch.set_rng_state(state["torch"])
    _set_numpy_state_bytes(state["numpy"].numpy().tobytes())
    version, _, gauss = random.getstate()
    random.setstate((version, tuple(state["python"]), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_bytes() -> bytes:
    # numpy's legacy global state as raw bytes (key array + position), so that no pickle is needed
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return (
        np.asarray(keys, dtype=np.uint32).tobytes()
        + np.asarray([pos, has_gauss], dtype=np.int64).tobytes()
        + np.asarray([cached], dtype=np.float64).tobytes()
    )


def _set_numpy_state_bytes(raw: bytes) -> None:
    keys = np.frombuffer(raw[: 624 * 4], dtype=np.uint32)
    pos, has_gauss = np.frombuffer(raw[624 * 4 : 624 * 4 + 16], dtype=np.int64)
    cached = float(np.frombuffer(raw[624 * 4 + 16 :], dtype=np.float64)[0])
    np.random.set_state(("MT19937", keys, int(pos), int(has_gauss), cached))
