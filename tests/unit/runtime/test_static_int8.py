"""Int8 convolutions and neck with fitted activation ranges: same answers, saved, refusals."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from models.calibration import CalibrationConfig
from models.calibration.activation_ranges import with_activation_ranges
from models.classifier.io import TrainedClassifier
from models.classifier.network import HierarchicalClassifier
from models.classifier.prediction import Predictor
from models.gan.networks import GanArchitecture
from models.runtime.quantize import QuantizationError, quantize_model
from models.runtime.static_int8 import (
    Int8Conv2d,
    Int8Linear,
    fit_activation_ranges,
    fold_batch_norms,
    quantizable_convs,
    quantizable_linears,
    quantize_with_ranges,
)
from tests.toy_models import TREE, square_classifier, square_images


@pytest.fixture(scope="module")
def ranged() -> TrainedClassifier:
    images, _ = square_images(300, seed=11)
    return with_activation_ranges(square_classifier(), images, max_images=256)


def deep_model() -> HierarchicalClassifier:
    """An untrained network whose blocks have extra conv + batch-norm layers."""
    arch = GanArchitecture(latent_dim=8, g_width=8, d_width=8, d_extra_layers=1)
    model = HierarchicalClassifier(arch, TREE.level_sizes, square_classifier().config)
    for m in model.modules():  # batch norms that do something to fold
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return model.eval()


def test_folding_batch_norms_keeps_the_outputs_and_the_names() -> None:
    model = deep_model()
    folded = fold_batch_norms(model)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        for a, b in zip(model(x), folded(x), strict=True):
            assert torch.allclose(a, b, atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.backbone.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.modules())  # a copy
    names = dict(model.named_modules())
    assert all(n in names for n in quantizable_convs(folded))


def test_every_trunk_conv_but_the_first_and_the_neck_run_in_int8() -> None:
    model = deep_model()
    images, _ = square_images(64, seed=3)
    ranges = fit_activation_ranges(model, images, batch_size=32)
    convs = quantizable_convs(model)
    assert len(convs) == 3  # two extra layers and the second block's strided conv
    assert list(ranges) == convs + quantizable_linears(model) == convs + ["neck.0"]
    for name in convs:
        r = ranges[name]
        assert r["input"][0] <= 0 <= r["input"][1] and r["output"][1] > r["output"][0]
    assert set(ranges["neck.0"]) == {"input"}  # its output stays float32
    quantized = quantize_with_ranges(model, ranges)
    first = quantized.backbone.trunk[0][0]
    assert isinstance(first, nn.Conv2d)  # reads the pixels: stays float32
    assert sum(isinstance(m, Int8Conv2d) for m in quantized.modules()) == 3
    assert isinstance(quantized.neck[0], Int8Linear)
    assert all(type(head) is nn.Linear for head in quantized.heads)  # tiny: float32


def test_int8_linear_is_the_product_of_its_quantized_input_and_weights() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(48, 5)
    int8 = Int8Linear(linear, [-1.0, 2.0])
    x = torch.rand(7, 48) * 4 - 1.5  # some beyond the range: clipped to it
    scale, zero = int8.input_scale, int8.input_zero_point
    w = linear.weight.detach()
    w_scales = w.abs().amax(dim=1, keepdim=True) / 127
    w_int8 = torch.round(w / w_scales).clamp(-127, 127) * w_scales
    # 7-bit input codes (AVX2 kernels saturate beyond): the fitted range is codes 0..127
    expected = torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 127) @ w_int8.T
    assert torch.allclose(int8(x), expected + linear.bias.detach(), atol=1e-4)
    assert not torch.allclose(int8(x), linear(x).detach(), atol=1e-4)  # it did round


def test_static_int8_answers_do_not_depend_on_the_batch(ranged) -> None:
    images, _ = square_images(40, seed=9)
    bright = np.full((1, 28, 28, 1), 255, np.uint8)  # widens a batch's own activation range
    batch = np.concatenate([images, bright])
    for quantization, max_diff in (("static-int8", 1e-5), ("dynamic-int8", None)):
        predictor = Predictor(ranged, quantization=quantization)
        alone = np.concatenate([predictor.leaf_probs(im[None]) for im in images])
        together = predictor.leaf_probs(batch)[:-1]
        diff = np.abs(alone - together).max()
        if max_diff is not None:
            assert diff < max_diff
        else:  # the batch's own range, per batch: the reason static-int8 fits one
            assert diff > 1e-4


def test_ranges_from_before_the_neck_had_its_own_serve_dynamic_int8_linears(ranged, caplog) -> None:
    convs_only = {k: v for k, v in ranged.activation_ranges.items() if k.startswith("backbone")}
    assert len(convs_only) == len(ranged.activation_ranges) - 1
    with caplog.at_level(logging.WARNING, logger="models.runtime.quantize"):
        model = quantize_model(ranged.build(), "static-int8", convs_only)
    assert "convolutions only" in caplog.text
    assert any(isinstance(m, Int8Conv2d) for m in model.modules())
    assert model.neck[0]._get_name() == "DynamicQuantizedLinear"


def test_activation_ranges_travel_in_the_artifact(ranged, tmp_path) -> None:
    ranged.save(tmp_path)
    loaded = TrainedClassifier.load(tmp_path)
    assert loaded.activation_ranges == ranged.activation_ranges
    square_classifier().save(tmp_path / "older")
    assert TrainedClassifier.load(tmp_path / "older").activation_ranges is None


def test_a_model_without_ranges_is_served_dynamic_int8_with_a_warning(caplog) -> None:
    classifier = square_classifier()
    with caplog.at_level(logging.WARNING, logger="models.classifier.prediction"):
        predictor = Predictor(classifier, quantization="static-int8")
    assert predictor.quantization == "dynamic-int8"
    assert "no activation ranges" in caplog.text
    with pytest.raises(QuantizationError, match="needs activation ranges"):
        quantize_model(classifier.build(), "static-int8", None)


def test_malformed_ranges_are_refused_by_layer(ranged) -> None:
    conv, neck = ranged.activation_ranges
    assert neck == "neck.0"
    for name, bad in (
        (conv, {"input": [0.0, 1.0]}),
        (conv, {"input": [1.0, 0.0], "output": [0.0, 1.0]}),
        (conv, {"input": [0.0, float("nan")], "output": [0.0, 1.0]}),
        (conv, [0.0, 1.0]),
        (neck, {"input": [0.0, 1.0], "output": [0.0, 1.0]}),
        (neck, {"input": [2.0, 1.0]}),
    ):
        ranges = dict(ranged.activation_ranges) | {name: bad}
        with pytest.raises(ValueError, match=f"activation ranges of {name}"):
            quantize_with_ranges(ranged.build(), ranges)


def test_ranges_of_another_model_are_refused_by_name(ranged) -> None:
    with pytest.raises(ValueError, match=r"missing \['backbone.trunk.0.2'"):
        quantize_with_ranges(deep_model(), ranged.activation_ranges)
    neck_only = {"neck.0": ranged.activation_ranges["neck.0"]}
    (conv,) = quantizable_convs(ranged.build())
    with pytest.raises(ValueError, match=rf"missing \['{conv}'\]"):
        quantize_with_ranges(ranged.build(), neck_only)
    with pytest.raises(QuantizationError, match="runs on the CPU only"):
        quantize_model(ranged.build().to("meta"), "static-int8", ranged.activation_ranges)


def test_no_images_no_ranges_and_the_subset_is_bounded() -> None:
    classifier = square_classifier()
    with pytest.raises(ValueError, match="at least one image"):
        with_activation_ranges(classifier, np.zeros((0, 28, 28, 1), np.uint8))
    assert CalibrationConfig().activation_range_images > 0
    with pytest.raises(ValueError):
        CalibrationConfig(activation_range_images=-1)
