"""Int8 convolutions with fitted activation ranges: same answers, ranges saved, refusals."""

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
    fit_activation_ranges,
    fold_batch_norms,
    quantizable_convs,
    quantize_convs,
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


def test_every_trunk_conv_but_the_first_runs_in_int8() -> None:
    model = deep_model()
    images, _ = square_images(64, seed=3)
    ranges = fit_activation_ranges(model, images, batch_size=32)
    assert list(ranges) == quantizable_convs(model)
    assert len(ranges) == 3  # two extra layers and the second block's strided conv
    for r in ranges.values():
        assert r["input"][0] <= 0 <= r["input"][1] and r["output"][1] > r["output"][0]
    quantized = quantize_convs(model, ranges)
    first = quantized.backbone.trunk[0][0]
    assert isinstance(first, nn.Conv2d)  # reads the pixels: stays float32
    assert sum(isinstance(m, Int8Conv2d) for m in quantized.modules()) == 3


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
    (name,) = ranged.activation_ranges
    for bad in (
        {"input": [0.0, 1.0]},
        {"input": [1.0, 0.0], "output": [0.0, 1.0]},
        {"input": [0.0, float("nan")], "output": [0.0, 1.0]},
        [0.0, 1.0],
    ):
        with pytest.raises(ValueError, match=f"activation ranges of {name}"):
            quantize_convs(ranged.build(), {name: bad})


def test_ranges_of_another_model_are_refused_by_name(ranged) -> None:
    with pytest.raises(ValueError, match=r"missing \['backbone.trunk.0.2'"):
        quantize_convs(deep_model(), ranged.activation_ranges)
    with pytest.raises(QuantizationError, match="runs on the CPU only"):
        quantize_model(ranged.build().to("meta"), "static-int8", ranged.activation_ranges)


def test_no_images_no_ranges_and_the_subset_is_bounded() -> None:
    classifier = square_classifier()
    with pytest.raises(ValueError, match="at least one image"):
        with_activation_ranges(classifier, np.zeros((0, 28, 28, 1), np.uint8))
    assert CalibrationConfig().activation_range_images > 0
    with pytest.raises(ValueError):
        CalibrationConfig(activation_range_images=-1)
