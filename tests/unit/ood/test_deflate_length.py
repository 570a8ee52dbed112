"""The compiled zlib level-1 length is zlib's own, byte for byte, and refuses what it cannot do."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import models.ood.deflate_length as deflate_length
from models.ood.deflate_length import MAX_BYTES, zlib1_bits, zlib1_compiles

# a zlib that parses otherwise (zlib-ng's compatible build says so in its version) gives other
# lengths: there the served score keeps the zlib call (test_a_zlib_that_differs_keeps_the_call)
classic_zlib = pytest.mark.skipif(
    "ng" in zlib.ZLIB_RUNTIME_VERSION, reason=f"zlib {zlib.ZLIB_RUNTIME_VERSION} is not zlib's"
)


def _inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    side = np.arange(28)
    inputs = [np.zeros(0), np.zeros(1), np.arange(2), np.arange(3), np.zeros(784), np.full(784, 9)]
    for _ in range(40):  # garment-like: a smooth blob, grain, a dark background
        centre = rng.uniform(8, 20, 2)
        blob = np.exp(-((side[:, None] - centre[0]) ** 2 + (side[None] - centre[1]) ** 2) / 60)
        grain = rng.integers(0, rng.choice([2, 8, 40]), (28, 28))
        inputs.append((np.clip(blob * rng.uniform(80, 255) + grain, 0, 255)).ravel())
    for high in (2, 4, 16, 256):  # noise: dynamic blocks, and stored ones (no gain at all)
        inputs += [rng.integers(0, high, n) for n in (5, 100, 784, 3072)]
    inputs.append(np.tile(np.arange(13) * 19, 300)[:3072])  # repeats: 258-byte matches
    inputs.append(np.cumsum(rng.integers(-3, 4, 3072)) % 256)  # a random walk
    inputs.append(np.where(rng.random(784) < 0.05, 255, 0))  # sparse
    p = 0.62 ** np.arange(40)  # skewed symbols over the largest input
    inputs.append(rng.choice(40, MAX_BYTES, p=p / p.sum()))
    return [np.ascontiguousarray(x, np.uint8) for x in inputs]


@classic_zlib
def test_the_length_is_zlibs() -> None:
    lengths = []
    for data in _inputs():
        expected = 8 * len(zlib.compress(data.tobytes(), 1))
        assert zlib1_bits(data) == expected, f"{len(data)} bytes: {data[:12]}"
        lengths.append((len(data), expected))
    # every kind of block was among them: stored (noise), fixed (a few bytes), dynamic (images)
    assert (784, 8 * (2 + 5 + 784 + 4)) in lengths  # stored: 3 bits to a byte, LEN, NLEN
    assert any(n == 784 and bits < 8 * 400 for n, bits in lengths)


def test_code_lengths_stay_within_the_limit_and_complete() -> None:
    """Fibonacci frequencies need codes over 15 bits: zlib's repair keeps a complete code."""
    fib = [1, 1]
    while len(fib) < 24:
        fib.append(fib[-1] + fib[-2])
    freq = np.zeros(deflate_length.L_CODES, np.int64)
    freq[: len(fib)] = fib
    lens = np.zeros(deflate_length.L_CODES, np.int64)
    max_code, bits, forced = deflate_length._code_lengths(
        freq, deflate_length.L_CODES, deflate_length.EXTRA_LBITS, 257, 15, lens
    )
    used = lens[: len(fib)]
    assert (max_code, forced) == (len(fib) - 1, 0)
    assert used.max() == 15 and (used > 0).all()
    assert np.sum(2.0**-used) == 1.0  # a complete prefix code
    assert bits == int(np.dot(fib, used))


def test_one_code_is_made_two_as_zlib_does() -> None:
    freq = np.zeros(deflate_length.D_CODES, np.int64)
    freq[4] = 7
    lens = np.zeros(deflate_length.D_CODES, np.int64)
    max_code, bits, forced = deflate_length._code_lengths(
        freq, deflate_length.D_CODES, deflate_length.EXTRA_DBITS, 0, 15, lens
    )
    assert (max_code, forced) == (4, 1)  # code 0 forced beside code 4
    assert lens[0] == lens[4] == 1
    assert bits == 7 * (1 + 1) + 1  # code 4: one bit and one extra bit; the forced code: 1


def test_sizes_it_does_not_compute_keep_the_zlib_call() -> None:
    if deflate_length.numba is None:
        assert not zlib1_compiles(784)
        return
    assert zlib1_compiles(784) == deflate_length._agrees_with_zlib()
    assert not zlib1_compiles(MAX_BYTES + 1)  # a second block of symbols: not computed here
