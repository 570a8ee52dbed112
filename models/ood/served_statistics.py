"""What the served OOD score reads, folded once at load from the fitted guard.

:class:`~models.ood.served_score.ServedScore` computes the score per request; this module turns
the guard's statistics into the arrays it multiplies: each part's weight (the standardisation's
scale), the neck's Gaussians folded into one centre, one quadratic form and each part's linear
terms, the kNN bank with its first stage's columns (leaf by leaf), and the pixel Gaussian with
its weight folded in. Float64 while folding, float32 once served.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from models.ood.complexity import LN2, LOG_2PI
from models.ood.guard import BACKGROUND, KNN_LAYER, OodGuard
from models.ood.scores import knn_candidates

LAYER = KNN_LAYER  # the neck: the kNN bank's layer, and the Gaussians' read here


def neck_part(part: str) -> tuple[str, str] | None:
    """``("maha" | "rmd", level)`` for ``maha_neck_<level>`` / ``rmd_neck_<level>``, else None."""
    kind, _, rest = part.partition("_")
    layer, _, level = rest.partition("_")
    return (kind, level) if kind in ("maha", "rmd") and layer == LAYER and level else None


class ServedKnn(NamedTuple):
    """The kNN component's served form: ``weight * (1 - kth / |z|)`` is its share of the score."""

    bank: np.ndarray  # [N, D] L2-normalised training features
    k: int
    candidates: int  # M: the first stage's candidates (the bank's size: one float32 pass)
    projected_t: np.ndarray | None  # [dim, N] the bank on the first stage's basis, or None
    # (None with ``leaves`` too: then ``leaf_projected`` holds its columns, leaf by leaf)
    weight: float
    leaves: int | None  # compare with the bank images of this many most probable leaves, or all
    leaf_rows: list[np.ndarray]  # per leaf: its bank images' indices (with ``leaves``)
    leaf_projected: list[np.ndarray]  # per leaf: [dim, n_l] its columns of projected_t, as
    # read from its int16 codes (leaf_codes x code_scale), so that every path ranks alike
    leaf_codes: list[np.ndarray]  # per leaf: [dim, n_l] int16, what the compiled score reads
    code_scale: np.ndarray | None = None  # [dim] float32: each direction's code step


class ServedPixels(NamedTuple):
    """The pixel component's served form: ``d'Pd + bits * bit_weight``, ``d = x - mean``.

    With a diagonal ``P`` (the default), ``d'Pd = |x * s - mean * s|^2`` with ``s = sqrt(P)``:
    three NumPy calls on the uint8 input instead of five.
    """

    mean: np.ndarray  # [D] float32
    precision: np.ndarray  # [D] diagonal or [D, D], the standardisation's weight folded in
    bit_weight: float
    compressor: str
    scale: np.ndarray | None  # [D] sqrt of a diagonal precision (float32), else None
    scaled_mean: np.ndarray | None  # [D] mean * scale (float32), else None


def part_weights(guard: OodGuard) -> tuple[dict[str, float], float]:
    """Each part's weight in the sum (1 / its scale) and the sum of ``-weight * location``.

    A score of one part is that component as it is (:meth:`OodGuard.combine`): weight 1.
    """
    if len(guard.parts) == 1:
        return {guard.parts[0]: 1.0}, 0.0
    weight = {p: 1.0 / guard.standardization[p][1] for p in guard.parts}
    return weight, -sum(guard.standardization[p][0] * weight[p] for p in guard.parts)


def served_knn(guard: OodGuard, weight: float) -> tuple[ServedKnn, np.ndarray | None]:
    """The kNN component's served form and its first stage's ``[D, dim]`` basis (or None)."""
    assert guard.neighbours is not None
    bank = guard.neighbours.float().numpy()
    k = min(guard.knn_k, len(bank))
    m = knn_candidates(k)
    leaf_rows: list[np.ndarray] = []
    if guard.knn_leaves is not None:
        assert guard.neighbour_leaves is not None
        leaves = guard.neighbour_leaves.cpu().numpy()
        leaf_rows = [np.flatnonzero(leaves == leaf) for leaf in range(int(leaves.max()) + 1)]
    if guard.coarse_search is None or m >= len(bank):
        one_pass = ServedKnn(bank, k, len(bank), None, weight, guard.knn_leaves, leaf_rows, [], [])
        return one_pass, None
    basis = guard.coarse_search.basis.double().numpy()
    projected_t = np.ascontiguousarray(guard.coarse_search.projected_t.float().numpy())
    codes, scale = first_stage_codes(projected_t)
    leaf_codes = [np.ascontiguousarray(codes[:, rows]) for rows in leaf_rows]
    leaf_projected = [c * scale[:, None] for c in leaf_codes]  # float32, as the codes read
    if leaf_projected:  # read leaf by leaf only: not kept twice (5.1 MB for 20,000 images)
        projected_t = None
    knn = ServedKnn(
        bank, k, m, projected_t, weight, guard.knn_leaves, leaf_rows, leaf_projected, leaf_codes,
        scale if leaf_codes else None,
    )  # fmt: skip
    return knn, basis


def first_stage_codes(projected_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[dim, N]`` int16 codes of the first stage's projected bank and ``[dim]`` float32 steps.

    Each direction's values to 32,767 steps of its largest: 3.6e-5 of the largest approximate
    product at most on the default model, where the 64 directions' own approximation is what
    ranks the candidates (the products of the chosen ones are float32). Half the bytes of a
    leaf's columns to read after a forward pass (256 of 512 KB): a guarded answer 6.5-13 us
    faster, paired, and 0 of 25,997 served scores changed (``bench/results/first_stage_int16.md``).
    """
    scale = np.abs(projected_t).max(axis=1).astype(np.float32) / np.float32(32767)
    scale[scale == 0] = 1
    codes = np.round(projected_t / scale[:, None]).astype(np.int16)
    return codes, scale


def folded_gaussians(
    guard: OodGuard, parts: list[str], weight: dict[str, float]
) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """``(c [D], Q [D, D], [(l [D, K], e [K]) per part])``, float64, weights folded in.

    Every part's (relative) Mahalanobis distance, times its weight, is ``zc'Q_p zc + min_k
    (zc'l_k + e_k)``; ``Q`` sums the ``Q_p``.
    """
    gaussians = {
        level: tuple(t.double().numpy() for t in guard.gaussians[f"{LAYER}.{level}"])
        for level in dict.fromkeys(neck_part(p)[1] for p in parts)  # type: ignore[index]
    }
    centre = np.concatenate([means for means, _ in gaussians.values()]).mean(0)
    background = None
    if any(neck_part(p)[0] == "rmd" for p in parts):  # type: ignore[index]
        means_b, precision_b = (
            t.double().numpy() for t in guard.gaussians[f"{LAYER}.{BACKGROUND}"]
        )
        b = means_b[0] - centre
        background = (precision_b, -2 * precision_b @ b, b @ precision_b @ b)
    quad = np.zeros((len(centre), len(centre)))
    blocks = []
    for part in parts:
        kind, level = neck_part(part)  # type: ignore[misc]
        means, precision = gaussians[level]
        a = means - centre  # [K, D]
        a_p = a @ precision
        q, lin, const = precision, -2 * a_p.T, (a_p * a).sum(1)  # [D, D], [D, K], [K]
        if kind == "rmd":
            assert background is not None
            q = q - background[0]
            lin = lin - background[1][:, None]
            const = const - background[2]
        quad += weight[part] * q
        blocks.append((weight[part] * lin, weight[part] * const))
    return centre, quad, blocks


def served_pixels(guard: OodGuard, weight: float) -> tuple[ServedPixels, float]:
    """The pixel component's served form and its constant ``weight * (logdet + D log 2pi) / 2``."""
    g = guard.pixel_gaussian
    assert g is not None
    mean = g.mean.double().numpy()
    precision = (0.5 * weight) * g.precision.double().numpy()
    const = 0.5 * weight * (g.logdet + mean.size * LOG_2PI)
    scale = scaled_mean = None
    if precision.ndim == 1 and (precision >= 0).all():  # a weight is 1 / a scale: positive
        scale = np.sqrt(precision)
        scaled_mean = (mean * scale).astype(np.float32)
        scale = scale.astype(np.float32)
    pixels = ServedPixels(
        mean.astype(np.float32),
        precision.astype(np.float32),
        -weight * LN2,
        g.compressor,
        scale,
        scaled_mean,
    )
    return pixels, const
