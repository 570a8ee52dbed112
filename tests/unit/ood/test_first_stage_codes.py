"""The first stage's int16 codes: each direction to 32,767 steps of its largest value."""

from __future__ import annotations

import numpy as np

from models.ood.served_statistics import first_stage_codes


def test_codes_read_back_within_half_a_step_and_use_the_whole_range() -> None:
    rng = np.random.default_rng(0)
    projected = rng.standard_normal((6, 500)).astype(np.float32) * np.array(
        [[1e-3], [0.5], [3.0], [40.0], [1.0], [0.0]], np.float32
    )  # directions of very different spread, one all zero
    codes, step = first_stage_codes(projected)
    assert codes.dtype == np.int16 and step.dtype == np.float32
    assert codes.shape == projected.shape and step.shape == (6,)
    read = codes * step[:, None]
    rounding = 1e-6 * np.abs(projected)  # float32's own, in the division and the product
    assert (np.abs(read - projected) <= step[:, None] / 2 + rounding).all()
    assert (np.abs(codes[:5]).max(axis=1) == 32767).all()  # each direction's largest: full scale
    assert (codes[5] == 0).all() and step[5] == 1  # an empty direction reads as zeros
