"""Int8 convolutions at inference (static quantization, CPU), their activation ranges fitted once.

Why: with the linear layers in int8 (:mod:`models.runtime.quantize`), one image's forward pass on
CPU is the trunk's convolutions, which are arithmetic-bound: the default model's three wide
convolutions took 0.17 ms each in float32 and 0.03 ms each in int8 (torch's x86 kernels, AVX-512
VNNI; 1 thread, batch 1), the whole pass 0.87 -> 0.42 ms. Unlike weights, activations need a
scale and zero point known before the request: they are fitted once on training-distribution
images (:func:`fit_activation_ranges`, the train pipeline's calibration step) and travel in the
classifier artifact (``TrainedClassifier.activation_ranges``, JSON).

How: batch norms are folded into the convolutions before them (exact in eval mode); every
trunk convolution but the first is replaced by :class:`Int8Conv2d` (float in, float out: input
quantized per tensor, int8 weights per output channel, output requantized to the fitted range,
then dequantized, so LeakyReLU, pooling and the rest stay float32). The first convolution reads
the pixels (one channel: 0.03 ms in float32) and int8 there would round the image's own grey
levels. Ranges come from torch's ``HistogramObserver`` (the range that minimises the
quantization's L2 error over a histogram of the activations) rather than min/max: with min/max
one outlier stretches the scale. Measured on the default model (10,000 test images,
``bench/results/serving_runtime.md``): fine accuracy 93.12 % vs 93.15 % in float32, 20 leaves
and 13 OOD verdicts changed, every OOD AUROC within 0.0003.

Why the eager ``torch.ao`` modules and not torch's export-based quantization (PT2E): PT2E's int8
speed on CPU comes from Inductor compiling the graph, which needs a C++ compiler where the model
is served; the eager modules run with torch alone (a bento, a bare GPU machine).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from models.runtime.tensors import map_image_batches

ActivationRanges = dict[str, dict[str, list[float]]]  # conv name -> {"input"/"output": [lo, hi]}


@contextmanager
def _quiet_eager_api() -> Iterator[None]:
    with warnings.catch_warnings():  # the eager API's migration notice (quantize.py says why)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        yield


def _qparams(lo: float, hi: float) -> tuple[float, int]:
    """Scale and zero point of quint8 covering ``[lo, hi]`` (0 always representable)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-8)
    return scale, int(min(max(round(-lo / scale), 0), 255))


class Int8Conv2d(nn.Module):
    """``[B, C_in, H, W]`` float -> ``[B, C_out, H', W']`` float, computed by an int8 convolution.

    Args:
        conv: the float convolution (batch norm already folded in).
        input_range: ``[lo, hi]`` the input is quantized to (per tensor; values beyond clip).
        output_range: ``[lo, hi]`` of the convolution's output (its requantization).
    """

    def __init__(
        self, conv: nn.Conv2d, input_range: list[float], output_range: list[float]
    ) -> None:
        super().__init__()
        import torch.ao.nn.quantized as nnq

        self.input_scale, self.input_zero_point = _qparams(*input_range)
        w = conv.weight.detach().float().cpu()
        scales = (w.abs().amax(dim=(1, 2, 3)).clamp_min(1e-8) / 127.0).double()
        zeros = torch.zeros(len(scales), dtype=torch.long)
        with _quiet_eager_api():  # torch warns once a process: here, not in a request's log
            qweight = torch.quantize_per_channel(w, scales, zeros, 0, torch.qint8)
            torch.quantize_per_tensor(torch.zeros(1), 1.0, 0, torch.quint8)
            self.conv = nnq.Conv2d(
                conv.in_channels,
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                conv.dilation,
                conv.groups,
                bias=conv.bias is not None,
            )
        bias = None if conv.bias is None else conv.bias.detach().float().cpu()
        self.conv.set_weight_bias(qweight, bias)
        self.conv.scale, self.conv.zero_point = _qparams(*output_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        q = torch.quantize_per_tensor(x, self.input_scale, self.input_zero_point, torch.quint8)
        return self.conv(q).dequantize()


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval) with every ``Conv2d -> BatchNorm2d`` pair in a Sequential fused.

    The batch norm becomes ``nn.Identity`` so that module names (the ranges' keys) stay those of
    the unfolded model.
    """
    folded = copy.deepcopy(model).eval()
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        children = list(seq.named_children())
        for (name, conv), (bn_name, bn) in zip(children, children[1:], strict=False):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(seq, name, fuse_conv_bn_eval(conv, bn))
                setattr(seq, bn_name, nn.Identity())
    return folded


def quantizable_convs(model: nn.Module) -> list[str]:
    """Names of the trunk convolutions run in int8: all but the first (which reads the pixels)."""
    trunk = model.backbone.trunk
    names = [f"backbone.trunk.{n}" for n, m in trunk.named_modules() if isinstance(m, nn.Conv2d)]
    return names[1:]


def fit_activation_ranges(
    model: nn.Module, images: np.ndarray, batch_size: int = 500
) -> ActivationRanges:
    """Input and output ranges of every :func:`quantizable_convs` layer on uint8 ``[N, H, W, C]``.

    Observed on the batch-norm-folded model (what :func:`quantize_convs` runs), eval mode, with
    ``HistogramObserver`` (see the module docstring); a few thousand training images suffice.
    """
    from torch.ao.quantization.observer import HistogramObserver

    folded = fold_batch_norms(model).cpu()
    names = quantizable_convs(folded)
    with _quiet_eager_api():
        observers = {
            n: {side: HistogramObserver(dtype=torch.quint8) for side in ("input", "output")}
            for n in names
        }

    def observe(name: str):  # noqa: ANN202 - a forward hook
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            # read now: the LeakyReLU after the convolution works in place
            observers[name]["input"](inputs[0].detach().float())
            observers[name]["output"](out.detach().float())

        return hook

    hooks = [folded.get_submodule(n).register_forward_hook(observe(n)) for n in names]
    try:
        with _quiet_eager_api():
            map_image_batches(folded, folded, images, batch_size)
    finally:
        for h in hooks:
            h.remove()
    ranges: ActivationRanges = {}
    for name, sides in observers.items():
        ranges[name] = {}
        for side, obs in sides.items():
            scale, zero = (float(v) for v in obs.calculate_qparams())
            ranges[name][side] = [-zero * scale, (255 - zero) * scale]
    return ranges


def _check_range(name: str, r: object) -> None:
    """``{"input": [lo, hi], "output": [lo, hi]}`` with finite ``lo <= hi``, else ValueError."""
    ok = isinstance(r, dict) and set(r) == {"input", "output"}
    for side in ("input", "output") if ok else ():
        v = r[side]
        ok = ok and isinstance(v, list | tuple) and len(v) == 2
        ok = ok and all(isinstance(x, int | float) and np.isfinite(x) for x in v) and v[0] <= v[1]
    if not ok:
        raise ValueError(
            f"activation ranges of {name}: expected {{'input': [lo, hi], 'output': [lo, hi]}} "
            f"with finite lo <= hi, got {r!r}"
        )


def quantize_convs(model: nn.Module, ranges: ActivationRanges) -> nn.Module:
    """A copy of ``model`` with batch norms folded and the ranged convolutions in int8.

    Raises:
        ValueError: ``ranges`` names a layer the model lacks or that is not a convolution, or
            lacks one of the model's quantizable convolutions (ranges fitted on another model),
            or a layer's ranges are malformed (a damaged ``classifier.json``).
    """
    folded = fold_batch_norms(model)
    expected = set(quantizable_convs(folded))
    if set(ranges) != expected:
        missing, extra = sorted(expected - set(ranges)), sorted(set(ranges) - expected)
        raise ValueError(
            f"activation ranges do not fit this model: missing {missing}, unknown {extra}"
        )
    for name, r in ranges.items():
        _check_range(name, r)
        parent, _, child = name.rpartition(".")
        conv = folded.get_submodule(name)
        setattr(folded.get_submodule(parent), child, Int8Conv2d(conv, r["input"], r["output"]))
    return folded
