"""Int8 at inference on CPU: linear layers' weights (dynamic), or convolutions and neck (static).

``dynamic-int8`` quantizes the linear layers (below); ``static-int8`` runs the trunk's
convolutions and the neck's linear layer in int8 with activation ranges fitted once on images
(:mod:`models.runtime.static_int8`, whose docstring says why and what it measured): its answers
do not depend on the other images of a batch, ``dynamic-int8``'s do. :func:`quantize_model`
picks.

Why: served one image at a time, the classifier's forward pass on CPU is memory-bound, not
arithmetic-bound. The neck's ``Linear(9408, 256)`` of the default profile holds 9.2 MB of
float32 weights that every request streams through the cache; the convolutions' weights are
~1 MB. Int8 weights (a scale per output unit) are a quarter of that; the activations are
quantized on the fly, per batch. Measured on 2 cores (AMD EPYC, default model, mirror TTA): a
forward pass of one image 0.85 -> 0.65 ms with warm caches, 1.19 -> 0.77 ms after 12 MB of other
data went through them (the serving case); batch 32 8.4 -> 6.9 ms. ``bench/serving_runtime.py``
measures latency, accuracy and the OOD guard's scores both ways.

Why ``torch.ao.quantization.quantize_dynamic``: it ships with torch (the bento and the bare GPU
machine need nothing else) and runs torch's x86 int8 kernels (fbgemm; AVX-512 VNNI here).
PyTorch marks the eager API for migration to torchao; torchao is not part of this stack, so the
project keeps the eager call, and :func:`quantize_linears` fails with a message that says so if
a future torch drops it.
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Literal, get_args

import torch
from torch import nn

from models.runtime.static_int8 import ActivationRanges, Int8Linear, quantize_with_ranges

logger = logging.getLogger(__name__)

Quantization = Literal["none", "dynamic-int8", "static-int8"]
QUANTIZATIONS: tuple[str, ...] = get_args(Quantization)


class QuantizationError(RuntimeError):
    """The network cannot be quantized as asked (device, torch build); the message says why."""


def quantize_model(
    model: nn.Module,
    quantization: Quantization,
    activation_ranges: ActivationRanges | None = None,
) -> nn.Module:
    """``model`` (eval, CPU) as ``quantization`` says: itself, int8 linears, or ranged int8 layers.

    ``static-int8`` with ranges from before the neck had its own (convolutions only) runs the
    linear layers ``dynamic-int8`` and warns: its answers then depend on the batch.

    Raises:
        ValueError: an unknown ``quantization``, or ranges that do not fit the model.
        QuantizationError: ``static-int8`` without activation ranges, a model not on the CPU, or
            a torch without the kernels.
    """
    if quantization != "static-int8":
        return quantize_linears(model, quantization)
    if activation_ranges is None:
        raise QuantizationError(
            "static-int8 needs activation ranges fitted on images (the train pipeline's "
            "calibration step saves them with the classifier): this model has none"
        )
    _check_runtime(model, quantization)
    try:
        ranged = quantize_with_ranges(model, activation_ranges)
    except RuntimeError as err:  # a torch without the int8 linear op
        raise QuantizationError(str(err)) from err
    if any(isinstance(m, Int8Linear) for m in ranged.modules()):
        return ranged  # the heads stay float32 (static_int8's docstring says why)
    logger.warning(
        "this model's activation ranges cover its convolutions only (fitted before the neck had "
        "its own): its linear layers run dynamic-int8, so an answer can depend on the other "
        "images of its batch; re-run the calibration step to fit them"
    )
    return quantize_linears(ranged, "dynamic-int8")


def _check_runtime(model: nn.Module, quantization: str) -> None:
    devices = {p.device.type for p in model.parameters()}
    if devices != {"cpu"}:
        raise QuantizationError(
            f"{quantization} runs on the CPU only; the model is on {sorted(devices)}: "
            "serve it with quantization: none on a GPU"
        )
    engines = torch.backends.quantized.supported_engines
    if not {"x86", "fbgemm"} & set(engines):
        raise QuantizationError(
            f"this torch build has no x86 int8 kernels (engines: {engines}): set quantization: none"
        )


def quantize_linears(model: nn.Module, quantization: Quantization) -> nn.Module:
    """``model`` (eval mode, on CPU) with its ``nn.Linear`` layers' weights in int8, or itself.

    Convolutions, batch norms and the tree merge stay float32. The input is not modified: a
    quantized copy is returned (``"none"`` returns ``model`` itself).

    Raises:
        ValueError: an unknown ``quantization``.
        QuantizationError: the model is not on the CPU, or this torch lacks the kernels.
    """
    if quantization == "none":
        return model
    if quantization != "dynamic-int8":
        raise ValueError(
            f"quantization must be one of ('none', 'dynamic-int8') here, got {quantization!r}"
        )
    _check_runtime(model, quantization)
    try:
        quantize_dynamic = torch.ao.quantization.quantize_dynamic
    except AttributeError as err:
        raise QuantizationError(
            f"torch {torch.__version__} no longer has torch.ao.quantization.quantize_dynamic: "
            "set quantization: none"
        ) from err
    with warnings.catch_warnings():
        # the eager API's migration notice (see the module docstring), once per load
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        # a scale per output unit (not one per tensor): the neck's 9,408 inputs per unit vary
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        copied = copy.deepcopy(model).eval()
        return quantize_dynamic(copied, {nn.Linear: qconfig}, dtype=torch.qint8)
