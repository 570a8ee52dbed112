"""Int8 linear layers at inference: the same answers, the float32 model kept, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from models.calibration.activation_ranges import with_activation_ranges
from models.classifier.prediction import Predictor
from models.ood import GuardedPredictor
from models.runtime.quantize import QuantizationError, quantize_linears
from serving.config import ServiceConfig
from tests.toy_models import guarded_square_classifier, square_classifier, square_images


@pytest.fixture(scope="module")
def classifier():
    # with the int8 activation ranges the calibration step fits (static-int8 reads them)
    return with_activation_ranges(square_classifier(), square_images(300, seed=11)[0], 256)


@pytest.mark.parametrize(
    ("quantization", "int8_module", "agreement", "max_diff"),
    [
        ("dynamic-int8", "DynamicQuantizedLinear", 1.0, 0.05),
        ("static-int8", "Int8Conv2d", 0.98, 0.1),
    ],
)
def test_int8_predictor_answers_like_float32(
    classifier, quantization: str, int8_module: str, agreement: float, max_diff: float
) -> None:
    images, _ = square_images(120, seed=5)
    ref = Predictor(classifier).leaf_probs(images)
    int8 = Predictor(classifier, quantization=quantization)
    probs = int8.leaf_probs(images)
    assert int8.quantization == quantization
    assert any(m._get_name() == int8_module for m in int8.model.modules())
    assert (probs.argmax(1) == ref.argmax(1)).mean() >= agreement
    assert np.abs(probs - ref).max() < max_diff


def test_quantizing_copies_and_none_is_the_identity(classifier) -> None:
    model = classifier.build().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantized = quantize_linears(model, "dynamic-int8")
    assert quantized is not model
    assert all(isinstance(m, nn.Linear) for m in model.neck if isinstance(m, nn.Linear))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert quantize_linears(model, "none") is model


def test_unknown_quantization_and_gpu_models_are_refused(classifier) -> None:
    model = classifier.build().eval()
    with pytest.raises(ValueError, match="quantization must be one of"):
        quantize_linears(model, "int4")  # type: ignore[arg-type]
    with pytest.raises(QuantizationError, match="runs on the CPU only"):
        quantize_linears(model.to("meta"), "dynamic-int8")
    with pytest.raises(ValueError, match="quantization"):
        ServiceConfig(quantization="int4")


@pytest.mark.parametrize("quantization", ["dynamic-int8", "static-int8"])
def test_guard_verdicts_survive_int8(quantization: str) -> None:
    guarded, _, _ = guarded_square_classifier()
    if quantization == "static-int8":  # activation ranges, as the calibration step fits them
        guarded = with_activation_ranges(guarded, square_images(300, seed=1)[0])
    images, _ = square_images(60, seed=7)
    noise = np.random.default_rng(3).integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
    batch = np.concatenate([images, noise])
    _, ref = GuardedPredictor(guarded).classify(batch)
    predictor = GuardedPredictor(guarded, quantization=quantization)
    _, int8 = predictor.classify(batch)
    assert predictor.quantization == quantization
    flips = sum(a["is_ood"] != b["is_ood"] for a, b in zip(ref, int8, strict=True))
    # fbgemm's int8 kernels round differently by CPU: on this toy model static-int8 flips 2 of
    # the 80 verdicts on an AVX2 host and 4 (in-distribution images near the threshold) on an
    # AVX-512 VNNI one; dynamic-int8 at most 1. A flip may only come from near the threshold:
    # the test images' scores move by less than a thousandth of their gap to the noise's.
    assert flips <= 0.05 * len(batch)
    gap = min(r["score"] for r in ref[60:]) - max(r["score"] for r in ref[:60])
    moved = max(abs(a["score"] - b["score"]) for a, b in zip(ref[:60], int8[:60], strict=True))
    assert moved < 1e-3 * gap
    assert all(v["is_ood"] for v in int8[60:])
