"""The process the core runs in: devices and threads, uint8 images through a network, checkpoints.

Exports :func:`prepare_device` (resolve ``auto``/``cpu``/``cuda``, set CPU threads, fast math),
:func:`to_model_range` and :func:`map_image_batches` (uint8 ``[N, H, W, C]`` images through a
network in batches), the atomic, ``weights_only`` checkpoints of :mod:`.checkpoint`, and
:func:`quiet_telemetry` for the entry points. Torch and numpy only.
"""

from models.runtime.checkpoint import (
    CheckpointError,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from models.runtime.device import prepare_device, resolve_device
from models.runtime.environment import TELEMETRY_OFF, quiet_telemetry
from models.runtime.tensors import map_image_batches, to_model_range, to_unit_range

__all__ = [
    "TELEMETRY_OFF",
    "CheckpointError",
    "load_checkpoint",
    "map_image_batches",
    "prepare_device",
    "quiet_telemetry",
    "resolve_device",
    "restore_rng_state",
    "rng_state",
    "save_checkpoint",
    "to_model_range",
    "to_unit_range",
]
