"""Int8 linear layers at inference: the same answers, the float32 model kept, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from models.classifier.prediction import Predictor
from models.ood import GuardedPredictor
from models.runtime.quantize import QuantizationError, quantize_linears
from serving.config import ServiceConfig
from tests.toy_models import guarded_square_classifier, square_classifier, square_images


@pytest.fixture(scope="module")
def classifier():
    return square_classifier()


def test_int8_predictor_answers_like_float32(classifier) -> None:
    images, _ = square_images(120, seed=5)
    ref = Predictor(classifier).leaf_probs(images)
    int8 = Predictor(classifier, quantization="dynamic-int8")
    probs = int8.leaf_probs(images)
    assert int8.quantization == "dynamic-int8"
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in int8.model.modules())
    assert np.array_equal(probs.argmax(1), ref.argmax(1))
    assert np.abs(probs - ref).max() < 0.05


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


def test_guard_verdicts_survive_int8() -> None:
    guarded, _, _ = guarded_square_classifier()
    images, _ = square_images(60, seed=7)
    noise = np.random.default_rng(3).integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
    batch = np.concatenate([images, noise])
    _, ref = GuardedPredictor(guarded).classify(batch)
    _, int8 = GuardedPredictor(guarded, quantization="dynamic-int8").classify(batch)
    flips = sum(a["is_ood"] != b["is_ood"] for a, b in zip(ref, int8, strict=True))
    assert flips <= 2
    assert all(v["is_ood"] for v in int8[60:])
