"""The served score of one image in one compiled call (numba), when numba is installed.

:class:`~models.ood.served_score.ServedScore` serves a single image in about fifteen NumPy calls
(the centred features, the one matrix's product, the quadratic form, the Gaussian parts'
minima, the leaf's first-stage search, the candidates' exact products, the pixel terms). Right
after the network's forward pass each call costs several microseconds for what it does not
compute: the interpreter, NumPy's dispatch and caches that the pass evicted. Here the same
arithmetic runs as one compiled loop nest over the same arrays, the pixel part's length too:
``entropy``, or zlib's level-1 length (:mod:`models.ood.deflate_length`, where it matches this
process's zlib); a PNG length stays a call in Python.

Measured (the default guard, the served ``static-int8`` network, one thread, 3 x 600 test
images, each score right after a forward pass, this 2-core AMD EPYC host): the score 135-157 us
in NumPy, 81-86 us compiled with zlib's call (~35 us of it); no score moved by more than 5e-5.
The zlib length computed here instead of called: 8-24 us less per guarded answer (three paired
runs, the same scores; ``bench/results/zlib_length.md``); the first stage read from int16 codes
instead of float32 columns (half the bytes): 6.5-13 us less, 0 of 25,997 served scores changed
(``bench/results/first_stage_int16.md``). Not kept: Q of the quadratic form read from its upper
triangle (338 -> 205 KB of the matrix): no time saved, paired (-0.3 us over 1,800 answers).

Why numba and not NumPy alone: what is left in NumPy is calls, not arithmetic (the last stops
cut the calls from 25 to 15; see ``served_score.py``). Why not a C extension or torch: numba is
a maintained library that compiles plain Python loops at run time, with no compiler to ship and
nothing to build at install; torch's per-call cost is higher than NumPy's. numba is optional:
the core runs with torch and NumPy alone, and without numba :class:`ServedScore` keeps its NumPy
path (the same numbers up to float32 rounding, which a unit test holds them to).

The first call compiles (about a second; ``cache=True`` keeps the machine code beside this file
where it is writable, or in ``NUMBA_CACHE_DIR``): :class:`CompiledOneImage` makes it at load,
not on the first request.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from models.ood.served_statistics import ServedKnn, ServedPixels

from models.ood.compiled import jit as _jit
from models.ood.compiled import numba
from models.ood.deflate_length import zlib1_bits, zlib1_compiles

# the pixel length the kernel computes itself (else the caller adds it to the constant)
NO_LENGTH, ENTROPY_LENGTH, ZLIB1_LENGTH = 0, 1, 2


def _kernel_length(compressor: str, n_bytes: int) -> int:
    """Which length of an ``n_bytes`` image the kernel computes for ``compressor``."""
    if compressor == "entropy":
        return ENTROPY_LENGTH
    if compressor == "zlib" and zlib1_compiles(n_bytes):
        return ZLIB1_LENGTH
    return NO_LENGTH  # PNG, or a zlib this process's own does not match: a call outside


@_jit
def _matvec(x: np.ndarray, m: np.ndarray, out: np.ndarray) -> None:
    """``out += x @ m`` for ``x [D]``, ``m [D, W]`` (row by row: ``m`` is read once, in order)."""
    for i in range(m.shape[0]):
        xi = x[i]
        for j in range(m.shape[1]):
            out[j] += xi * m[i, j]


@_jit
def _matvec_codes(x: np.ndarray, step: np.ndarray, codes: np.ndarray, out: np.ndarray) -> None:
    """``out += x @ (codes * step[:, None])`` for int16 ``codes [D, W]`` read once, in order."""
    for i in range(codes.shape[0]):
        xi = x[i] * step[i]
        for j in range(codes.shape[1]):
            out[j] += xi * np.float32(codes[i, j])


@_jit
def _dot(a: np.ndarray, b: np.ndarray) -> float:
    total = np.float32(0.0)
    for i in range(a.shape[0]):
        total += a[i] * b[i]
    return total


@_jit
def _top_indices(values: np.ndarray, m: int) -> np.ndarray:
    """The indices of the ``m`` largest of ``values`` (in no order), ``0 < m <= len(values)``.

    One pass that keeps the best ``m`` seen: a value enters only when it beats the smallest kept
    (of a leaf's 2,000 first-stage products, a few dozen do).
    """
    best = values[:m].copy()
    index = np.arange(m)
    low = np.argmin(best)
    for j in range(m, values.shape[0]):
        if values[j] > best[low]:
            best[low] = values[j]
            index[low] = j
            low = np.argmin(best)
    return index


@_jit
def _entropy_bits(raw: np.ndarray) -> float:
    """:func:`~models.ood.complexity.entropy_sizes` of one image's ``raw`` bytes (zlib's order)."""
    counts = np.zeros(256, np.int64)
    previous = 0
    for i in range(raw.shape[0]):
        value = np.int64(raw[i])
        counts[(value - previous) & 255] += 1
        previous = value
    n = raw.shape[0]
    bits = n * math.log2(n) if n > 0 else 0.0
    for c in counts:
        if c > 0:
            bits -= c * math.log2(c)
    return bits


@_jit
def one_image_score(
    z: np.ndarray,  # [D] float32 neck features
    centre: np.ndarray,  # [D] the Gaussian parts' centre (zeros without them)
    matrix: np.ndarray,  # [D, W] the one matrix (W = 0 without it)
    bias: np.ndarray,  # [W]
    quad: tuple[int, int],  # the columns of zc'Q, (0, 0) without Gaussian parts
    mins: np.ndarray,  # [P, 2] int64: each Gaussian part's columns (start, stop)
    basis_width: int,  # the first stage's columns of the one matrix
    projected: np.ndarray,  # [basis_width, n] int16: the leaf's bank on the first stage's basis
    step: np.ndarray,  # [basis_width] float32: the value of one code step per direction
    rows: np.ndarray,  # [n] int64: the leaf's bank images
    bank: np.ndarray,  # [N, D] L2-normalised training features
    candidates: int,  # M, the first stage's candidates
    k: int,  # the neighbour whose product counts (0: no kNN part)
    knn_weight: float,
    pixels: np.ndarray,  # [H * W * C] uint8 in the pixel view's order (empty: no pixel part)
    scale: np.ndarray,  # [H * W * C] float32
    scaled_mean: np.ndarray,  # [H * W * C] float32
    raw: np.ndarray,  # the uint8 image in zlib's order, for a length computed here
    length: int,  # the length computed here: NO_LENGTH, ENTROPY_LENGTH or ZLIB1_LENGTH
    bit_weight: float,  # the length's weight
    constant: float,  # every offset (and a compressed length's term computed outside)
) -> float:
    """:meth:`ServedScore._one`'s sum, in one call (see the module's docstring)."""
    zc = z - centre
    r = bias.copy()
    _matvec(zc, matrix, r)
    total = constant
    for i in range(quad[1] - quad[0]):  # zc'Qzc
        total += r[quad[0] + i] * zc[i]
    for part in range(mins.shape[0]):
        total += r[mins[part, 0] : mins[part, 1]].min()
    if k > 0:
        chosen = rows
        if candidates < rows.shape[0]:  # first stage: the leaf's approximate products
            coarse = np.zeros(rows.shape[0], np.float32)
            _matvec_codes(r[:basis_width], step, projected, coarse)
            chosen = rows[_top_indices(coarse, candidates)]
        products = np.empty(chosen.shape[0], np.float32)
        for c in range(chosen.shape[0]):
            products[c] = _dot(bank[chosen[c]], z)
        kth = np.sort(products)[chosen.shape[0] - k]
        total += (1.0 - kth / max(math.sqrt(_dot(z, z)), 1e-12)) * knn_weight
    for i in range(pixels.shape[0]):
        u = np.float32(pixels[i]) * scale[i] - scaled_mean[i]
        total += u * u
    if length == ENTROPY_LENGTH:
        total += _entropy_bits(raw) * bit_weight
    elif length == ZLIB1_LENGTH:
        total += zlib1_bits(raw) * bit_weight
    return total


class CompiledOneImage:
    """One image's served score through :func:`one_image_score`, its arrays bound once.

    Built by :class:`~models.ood.served_score.ServedScore` when numba is installed and the score
    is one this kernel computes (:meth:`computes`); compiled (or loaded from numba's cache) here,
    at load, so that no request waits for it.
    """

    def __init__(
        self,
        centre: np.ndarray | None,
        matrix: np.ndarray | None,
        bias: np.ndarray,
        quad: slice | None,
        mins: list[slice],
        basis_width: int,
        knn: ServedKnn | None,
        pixels: ServedPixels | None,
    ) -> None:
        f32 = np.float32
        dim = len(centre) if centre is not None else knn.bank.shape[1] if knn is not None else 0
        self._centre = np.zeros(dim, f32) if centre is None else centre
        self._matrix = np.zeros((dim, 0), f32) if matrix is None else matrix
        self._bias = bias
        self._quad = (0, 0) if quad is None else (quad.start, quad.stop)
        self._mins = np.array([[m.start, m.stop] for m in mins], np.int64).reshape(-1, 2)
        self._basis_width = basis_width
        self._knn = knn
        # per leaf: its first stage's int16 columns and bank rows (no kNN part: one empty leaf)
        self._leaves = [(np.zeros((0, 0), np.int16), np.zeros(0, np.int64))]
        self._step = np.zeros(0, f32)
        self._bank = np.zeros((0, dim), f32)
        if knn is not None:
            assert knn.code_scale is not None  # computes(): a leaf search in two stages
            self._leaves = [
                (np.ascontiguousarray(c, np.int16), np.ascontiguousarray(r, np.int64))
                for c, r in zip(knn.leaf_codes, knn.leaf_rows, strict=True)
            ]
            self._step = np.ascontiguousarray(knn.code_scale, f32)
            self._bank = knn.bank
        self._pixels = (np.zeros(0, f32), np.zeros(0, f32))
        self._bit_weight = 0.0
        self._length = NO_LENGTH  # the length the kernel computes (else it is in constant)
        if pixels is not None:
            assert pixels.scale is not None and pixels.scaled_mean is not None
            self._pixels = (pixels.scale, pixels.scaled_mean)
            self._bit_weight = pixels.bit_weight
            self._length = _kernel_length(pixels.compressor, len(pixels.scale))
        # compile now, on a zero image in the largest leaf: the first request does not wait
        biggest = max(range(len(self._leaves)), key=lambda leaf: len(self._leaves[leaf][1]))
        flat = np.zeros(len(self._pixels[0]), np.uint8)
        self.score(np.zeros(dim, f32), flat, flat, biggest, 0.0)

    @staticmethod
    def computes(
        centre: np.ndarray | None, knn: ServedKnn | None, pixels: ServedPixels | None
    ) -> bool:
        """Whether numba is installed and the kernel computes this score.

        It does when the score reads the features (a Gaussian part with its ``centre``, or a kNN
        part), the kNN search (if any) reads the most probable leaf's bank images, and the pixel
        Gaussian (if any) is diagonal: the default guard's settings. (A pixel part alone is a
        handful of NumPy calls as it is.)
        """
        if numba is None or (centre is None and knn is None):
            return False
        if knn is not None and not (knn.leaves == 1 and knn.leaf_codes):
            return False
        return pixels is None or pixels.scale is not None

    @property
    def computes_length(self) -> bool:
        """Whether the kernel computes the pixel part's length.

        It does for ``entropy``, and for ``zlib`` where
        :func:`~models.ood.deflate_length.zlib1_bits` matches this process's zlib.
        """
        return self._length != NO_LENGTH

    def score(
        self, z: np.ndarray, flat: np.ndarray, raw: np.ndarray, leaf: int, constant: float
    ) -> float:
        """The score of ``[D]`` features and one uint8 image's pixels.

        ``flat``: in the pixel view's order (channels first); ``raw``: in zlib's (channels
        last; the pixel view's size, as :meth:`ServedScore.serves` ensures), read when the
        kernel computes the length (:attr:`computes_length`); ``leaf``: the most probable (its
        bank images are searched); ``constant``: every offset, plus the length's term where it
        is computed outside.
        """
        knn = self._knn
        projected, rows = self._leaves[leaf if knn is not None else 0]
        m, k, weight = (0, 0, 0.0) if knn is None else (knn.candidates, knn.k, knn.weight)
        return one_image_score(
            z,
            self._centre,
            self._matrix,
            self._bias,
            self._quad,
            self._mins,
            self._basis_width,
            projected,
            self._step,
            rows,
            self._bank,
            m,
            k,
            weight,
            flat,
            *self._pixels,
            raw,
            self._length,
            self._bit_weight,
            constant,
        )
