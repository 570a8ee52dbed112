"""The predictor's input checks: shapes, dtypes and value ranges named when wrong."""

from __future__ import annotations

import numpy as np
import pytest

from models.classifier.prediction import InputShapeError, Predictor


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 28, 27, 1), np.uint8), r"expected shape \[N, 28, 28, 1\]"),
        (np.zeros((0, 28, 28, 1), np.uint8), "no images"),
        (np.full((1, 28, 28), 256.0), r"in \[0, 255\]"),
        (np.full((1, 28, 28), -1), r"in \[0, 255\]"),
        (np.full((1, 28, 28), 0.5), "whole numbers"),
        (np.full((1, 28, 28), np.nan), r"in \[0, 255\]"),
        (np.full((1, 28, 28), "a"), "expected numbers"),
    ],
)
def test_array_checks_name_the_problem(images, message: str) -> None:
    with pytest.raises(InputShapeError, match=message):
        Predictor.check_shape(images, (28, 28, 1))


def test_array_checks_add_missing_axes() -> None:
    one = Predictor.check_shape(np.zeros((28, 28), np.int64), (28, 28, 1))
    assert one.shape == (1, 28, 28, 1) and one.dtype == np.uint8
    assert Predictor.check_shape(np.zeros((3, 28, 28)), (28, 28, 1)).shape == (3, 28, 28, 1)
