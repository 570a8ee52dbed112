"""Int8 convolutions and neck at inference (static quantization, CPU), ranges fitted once.

Why: with the linear layers in int8 (:mod:`models.runtime.quantize`), one image's forward pass on
CPU is the trunk's convolutions, which are arithmetic-bound: the default model's three wide
convolutions took 0.17 ms each in float32 and 0.03 ms each in int8 (torch's x86 kernels on a
host with AVX-512 VNNI; 1 thread, batch 1), the whole pass 0.87 -> 0.42 ms. Unlike weights,
activations need a scale and zero point known before the request: they are fitted once on
training-distribution images (:func:`fit_activation_ranges`, the train pipeline's calibration
step) and travel in the classifier artifact (``TrainedClassifier.activation_ranges``, JSON).

How: batch norms are folded into the convolutions before them (exact in eval mode); every
trunk convolution but the first is replaced by :class:`Int8Conv2d` (float in, float out: input
quantized per tensor, int8 weights per output channel, output requantized to the fitted range,
then dequantized, so LeakyReLU, pooling and the rest stay float32). The first convolution reads
the pixels (one channel: 0.03 ms in float32) and int8 there would round the image's own grey
levels. Ranges come from torch's ``HistogramObserver`` (the range that minimises the
quantization's L2 error over a histogram of the activations) rather than min/max: with min/max
one outlier stretches the scale. Measured on the default model (10,000 test images,
``bench/results/serving_runtime.md``, convolutions and neck in int8): fine accuracy 93.83 % vs
93.84 % in float32, 48 leaves and 18 OOD verdicts changed, every offline OOD set's AUROC within
0.0001.

The neck's ``Linear(9408, 256)`` (the forward pass's largest weights) runs in int8 the same way,
:class:`Int8Linear`: its input quantized to a fitted range, not to each batch's own (what
``dynamic-int8`` does). With a batch's own range, an image's answer depended on the images
beside it in the batch: the same test image alone and among 64 differed by up to 0.033 in a leaf
probability (1 of 2,000 leaves changed), and the service batches concurrent requests together.
With the fitted range every image is computed alone: 1 vs 64 differ by 1.2e-7, as in float32
(512 test images; the OOD score 4e-4 against 0.23), and one image's pass is 1.88 -> 1.80 ms
(1 thread, 400 calls). The heads (256 x 18 weights) stay float32: int8 there saves nothing.
Artifacts whose ranges predate the neck's (conv ranges only) serve their linear layers
``dynamic-int8``, as before (:func:`models.runtime.quantize.quantize_model` warns).

Every int8 layer's input takes 7-bit codes (0..127, clipped there), as PyTorch's own x86
defaults do (``reduce_range``): x86 int8 kernels without AVX-512 VNNI (AVX2, this project's CI
machines) add pairs of uint8 x int8 products in 16 bits, which saturate once codes pass 127.
Measured on AVX2 with 8-bit codes: the default model's convolutions put 1 in 100,000 outputs
2-7 steps off, but a small test model with a dense neck input got its neck 10 % wrong and 58 of
80 OOD verdicts changed. The cost of 7 bits on the default model (10,000 test images): 48
leaves differ from float32 (17 with 8-bit codes), fine accuracy 93.83 % (8-bit 93.88 %, float32
93.84 %).

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

# layer name -> {"input": [lo, hi], "output": [lo, hi]} (convolutions), {"input": [lo, hi]} (neck)
ActivationRanges = dict[str, dict[str, list[float]]]


@contextmanager
def _quiet_eager_api() -> Iterator[None]:
    with warnings.catch_warnings():  # the eager API's migration notice (quantize.py says why)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        yield


def _qparams(lo: float, hi: float, levels: int = 255) -> tuple[float, int]:
    """Scale and zero point of the codes 0..levels covering ``[lo, hi]`` (0 representable)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / levels, 1e-8)
    return scale, int(min(max(round(-lo / scale), 0), levels))


# An int8 layer's input in 7-bit codes (0..127), clipped there: x86 kernels without AVX-512
# VNNI add pairs of uint8 x int8 products in 16 bits, which saturate when codes pass 127 (the
# module docstring has the measurements).
INPUT_LEVELS = 127


class _Int8Input(nn.Module):
    """The input side of an int8 layer: a fitted ``[lo, hi]`` as 7-bit codes, and the clip."""

    def __init__(self, input_range: list[float]) -> None:
        super().__init__()
        self.input_scale, self.input_zero_point = _qparams(*input_range, levels=INPUT_LEVELS)
        self.input_lo = -self.input_zero_point * self.input_scale
        self.input_hi = (INPUT_LEVELS - self.input_zero_point) * self.input_scale

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` within the codes' range (a copy: the caller's tensor may be read elsewhere)."""
        return x.clamp(self.input_lo, self.input_hi)


class Int8Conv2d(_Int8Input):
    """``[B, C_in, H, W]`` float -> ``[B, C_out, H', W']`` float, computed by an int8 convolution.

    Args:
        conv: the float convolution (batch norm already folded in).
        input_range: ``[lo, hi]`` the input is quantized to (per tensor; values beyond clip).
        output_range: ``[lo, hi]`` of the convolution's output (its requantization).
    """

    def __init__(
        self, conv: nn.Conv2d, input_range: list[float], output_range: list[float]
    ) -> None:
        super().__init__(input_range)
        import torch.ao.nn.quantized as nnq

        with _quiet_eager_api():  # torch warns once a process: here, not in a request's log
            qweight = _per_channel_int8(conv.weight)
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
        q = torch.quantize_per_tensor(
            self.clip(x), self.input_scale, self.input_zero_point, torch.quint8
        )
        return self.conv(q).dequantize()


class Int8Linear(_Int8Input):
    """``[B, in]`` float -> ``[B, out]`` float, computed by an int8 matrix product.

    The input is quantized per tensor to a fitted range (values beyond clip), the weights per
    output unit; the output is float32 (nothing follows that needs it in int8). One fused torch
    op does all three, so each row's result depends on that row alone.

    Args:
        linear: the float linear layer.
        input_range: ``[lo, hi]`` the input is quantized to.

    Raises:
        RuntimeError: this torch lacks the fused op (the message says so).
    """

    def __init__(self, linear: nn.Linear, input_range: list[float]) -> None:
        super().__init__(input_range)
        try:
            self._op = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32
        except (AttributeError, RuntimeError) as err:
            raise RuntimeError(
                f"torch {torch.__version__} has no quantized.linear_with_input_q_dq_qweight_dq_"
                "output_fp32: serve with quantization: dynamic-int8"
            ) from err
        self.in_features, self.out_features = linear.in_features, linear.out_features
        bias = None if linear.bias is None else linear.bias.detach().float().cpu()
        with _quiet_eager_api():
            qweight = _per_channel_int8(linear.weight)
            self._packed = torch.ops.quantized.linear_prepack(qweight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self._op(self.clip(x), self.input_scale, self.input_zero_point, self._packed)

    def extra_repr(self) -> str:  # noqa: D102
        return f"in_features={self.in_features}, out_features={self.out_features}"


def _per_channel_int8(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` as qint8 with one symmetric scale per output unit (dim 0)."""
    w = weight.detach().float().cpu()
    scales = (w.flatten(1).abs().amax(dim=1).clamp_min(1e-8) / 127.0).double()
    zeros = torch.zeros(len(scales), dtype=torch.long)
    return torch.quantize_per_channel(w, scales, zeros, 0, torch.qint8)


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


def quantizable_linears(model: nn.Module) -> list[str]:
    """Names of the neck's linear layers, run in int8 with a fitted input range (not the heads)."""
    return [f"neck.{n}" for n, m in model.neck.named_children() if isinstance(m, nn.Linear)]


def ranged_layers(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Every layer ``static-int8`` runs in int8 -> the sides it has ranges for, in model order.

    A convolution's input and output (it is requantized), a neck linear's input only.
    """
    sides = {n: ("input", "output") for n in quantizable_convs(model)}
    return sides | {n: ("input",) for n in quantizable_linears(model)}


def missing_ranges(model: nn.Module, ranges: ActivationRanges | None) -> list[str]:
    """The layers ``static-int8`` runs in int8 that ``ranges`` lacks (all of them for ``None``).

    Non-empty for artifacts from before a layer had ranges: refit them to serve it in int8.
    """
    return [name for name in ranged_layers(model) if name not in (ranges or {})]


def fit_activation_ranges(
    model: nn.Module, images: np.ndarray, batch_size: int = 500
) -> ActivationRanges:
    """The ranges :func:`quantize_with_ranges` reads, observed on uint8 ``[N, H, W, C]`` images.

    Input and output ranges of every :func:`quantizable_convs` layer, input ranges of every
    :func:`quantizable_linears` layer. Observed on the batch-norm-folded model (what
    :func:`quantize_with_ranges` runs), eval mode, with ``HistogramObserver`` (see the module
    docstring); a few thousand training images suffice.
    """
    from torch.ao.quantization.observer import HistogramObserver

    folded = fold_batch_norms(model).cpu()
    sides = ranged_layers(folded)
    with _quiet_eager_api():
        observers = {
            n: {
                side: HistogramObserver(dtype=torch.quint8, reduce_range=side == "input")
                for side in layer_sides
            }
            for n, layer_sides in sides.items()
        }

    def observe(name: str):  # noqa: ANN202 - a forward hook
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            # read now: the LeakyReLU after a convolution works in place
            layer = observers[name]
            layer["input"](inputs[0].detach().float())
            if "output" in layer:
                layer["output"](out.detach().float())

        return hook

    hooks = [folded.get_submodule(n).register_forward_hook(observe(n)) for n in sides]
    try:
        with _quiet_eager_api():
            map_image_batches(folded, folded, images, batch_size)
    finally:
        for h in hooks:
            h.remove()
    ranges: ActivationRanges = {}
    for name, layer in observers.items():
        ranges[name] = {}
        for side, obs in layer.items():
            scale, zero = (float(v) for v in obs.calculate_qparams())
            top = INPUT_LEVELS if side == "input" else 255  # outputs are requantized to 8 bits
            ranges[name][side] = [-zero * scale, (top - zero) * scale]
    return ranges


def _check_range(name: str, r: object, sides: tuple[str, ...]) -> None:
    """``{side: [lo, hi]}`` for exactly ``sides``, finite ``lo <= hi``, else ValueError."""
    ok = isinstance(r, dict) and set(r) == set(sides)
    for side in sides if ok else ():
        v = r[side]
        ok = ok and isinstance(v, list | tuple) and len(v) == 2
        ok = ok and all(isinstance(x, int | float) and np.isfinite(x) for x in v) and v[0] <= v[1]
    if not ok:
        expected = ", ".join(f"'{side}': [lo, hi]" for side in sides)
        raise ValueError(
            f"activation ranges of {name}: expected {{{expected}}} with finite lo <= hi, got {r!r}"
        )


def quantize_with_ranges(model: nn.Module, ranges: ActivationRanges) -> nn.Module:
    """A copy of ``model`` with batch norms folded and the ranged layers in int8.

    ``ranges`` covers every :func:`quantizable_convs` layer and either every or none of the
    :func:`quantizable_linears` (an artifact from before the neck had ranges); the layers
    without ranges stay float32.

    Raises:
        ValueError: ``ranges`` names a layer the model lacks or that it does not quantize, or
            lacks one of the model's quantizable layers (ranges fitted on another model), or
            a layer's ranges are malformed (a damaged ``classifier.json``).
        RuntimeError: this torch lacks the int8 linear op.
    """
    folded = fold_batch_norms(model)
    sides = ranged_layers(folded)
    linears = set(quantizable_linears(folded))
    expected = {n for n in sides if n not in linears or linears & set(ranges)}
    if set(ranges) != expected:
        missing = sorted(expected - set(ranges))
        extra = sorted(set(ranges) - set(sides))
        raise ValueError(
            f"activation ranges do not fit this model: missing {missing}, unknown {extra}"
        )
    for name, r in ranges.items():
        _check_range(name, r, sides[name])
        parent, _, child = name.rpartition(".")
        layer = folded.get_submodule(name)
        int8 = (
            Int8Linear(layer, r["input"])
            if name in linears
            else Int8Conv2d(layer, r["input"], r["output"])
        )
        setattr(folded.get_submodule(parent), child, int8)
    return folded
