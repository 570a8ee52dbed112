"""The served score's neck components in NumPy: the kNN distance and (relative) Mahalanobis.

:meth:`OodGuard.components` computes every component in torch, for fitting and evaluation in
batches on any device. Served one image at a time on the CPU, each of its small torch operations
costs 10-20 us, and the default score's two neck components are about twenty of them. Here they
are the same products and reductions in NumPy, whose operations on small arrays cost a few.
Measured (the quality model, one thread, one image, interleaved with the torch version): what
the default guard adds to a prediction went from 0.63-0.67 ms to 0.45-0.48 ms (25-27 % to
18-19 % of it); then, each step's NumPy made cheaper (below, with the pixel component's
matrix-vector product), 0.51 -> 0.47 ms with the network in ``static-int8`` and one BLAS
thread, as served. The numbers are the torch path's up to float32 rounding (the same centred
expansion ``z'Pz - 2 m'Pz + m'Pm``, the same two-stage kNN search), which a unit test holds it
to; :class:`~models.ood.predictor.GuardedPredictor` uses it on the CPU when every network
component of the served score is one of these.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from models.ood.guard import BACKGROUND, KNN_LAYER, OodGuard

LAYER = KNN_LAYER  # the neck: the kNN bank's layer, and the Gaussians' read here


class _Gaussian(NamedTuple):
    """One level's Gaussian, as the served distance reads it."""

    centre: np.ndarray  # [D] the means' centroid
    precision: np.ndarray  # [D, D]
    mean_p_t: np.ndarray  # [D, K] the centred means times the precision, transposed
    mean_quad: np.ndarray  # [K] the centred means' quadratic forms


def _neck_level(part: str) -> tuple[str, str] | None:
    """``("maha" | "rmd", level)`` for ``maha_neck_<level>`` / ``rmd_neck_<level>``, else None."""
    kind, _, rest = part.partition("_")
    layer, _, level = rest.partition("_")
    return (kind, level) if kind in ("maha", "rmd") and layer == LAYER and level else None


class ServedNeckScores:
    """``[B, D]`` neck features -> the served score's neck components (NumPy, float32).

    Args:
        guard: the fitted guard, on the CPU, after :meth:`OodGuard.use_coarse_search` (else the
            kNN search compares with every neighbour).
        parts: the components to compute; :meth:`serves` says whether it can.
    """

    def __init__(self, guard: OodGuard, parts: list[str]) -> None:
        if not self.serves(guard, parts):
            raise ValueError(f"not neck components of this guard: {parts}")
        self.parts = list(parts)
        wanted = [_neck_level(p) for p in parts]
        levels = [w[1] for w in wanted if w]
        if any(w and w[0] == "rmd" for w in wanted):
            levels.append(BACKGROUND)
        self._gaussians: dict[str, _Gaussian] = {}
        for level in dict.fromkeys(levels):
            means, precision = (t.float().numpy() for t in guard.gaussians[f"{LAYER}.{level}"])
            centre = means.mean(0)  # centred as min_mahalanobis centres (float32 precision)
            mean_p = (means - centre) @ precision  # [K, D]
            self._gaussians[level] = _Gaussian(
                centre,
                np.ascontiguousarray(precision),
                np.ascontiguousarray(mean_p.T),  # [D, K]
                (mean_p * (means - centre)).sum(1),  # [K] the centred means' quadratic forms
            )
        self._knn = "knn" in parts
        self._coarse: tuple[np.ndarray, np.ndarray] | None = None
        if self._knn:
            assert guard.neighbours is not None
            self._bank = guard.neighbours.float().numpy()  # [N, D] L2-normalised
            self._k = min(guard.knn_k, len(self._bank))
            self._m = 4 * self._k + 16
            if guard.coarse_search is not None and self._m < len(self._bank):
                self._coarse = (
                    guard.coarse_search.basis.float().numpy(),  # [D, dim]
                    guard.coarse_search.projected_t.float().numpy(),  # [dim, N]
                )

    @staticmethod
    def serves(guard: OodGuard, parts: list[str]) -> bool:
        """Whether every part is ``knn`` or a neck (relative) Mahalanobis of this guard."""
        for part in parts:
            if part == "knn":
                if guard.neighbours is None:
                    return False
                continue
            found = _neck_level(part)
            if found is None or f"{LAYER}.{found[1]}" not in guard.gaussians:
                return False
            if found[0] == "rmd" and f"{LAYER}.{BACKGROUND}" not in guard.gaussians:
                return False
        return bool(parts)

    def __call__(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """``{part: [B]}`` for float32 ``[B, D]`` neck features."""
        maha = {}
        for level, g in self._gaussians.items():
            zc = z - g.centre
            quad = ((zc @ g.precision) * zc).sum(1, keepdims=True)  # [B, 1]
            maha[level] = np.maximum((quad - 2 * (zc @ g.mean_p_t) + g.mean_quad).min(1), 0)
        out = {}
        for part in self.parts:
            if part == "knn":
                out[part] = self._knn_distance(z)
                continue
            kind, level = _neck_level(part)  # type: ignore[misc]
            out[part] = maha[level] - maha[BACKGROUND] if kind == "rmd" else maha[level]
        return out

    def _knn_distance(self, z: np.ndarray) -> np.ndarray:
        """As :func:`~models.ood.scores.knn_distance`: 1 - cosine to the k-th neighbour."""
        if self._coarse is None:
            products = z @ self._bank.T  # [B, N]
        else:
            basis, projected_t = self._coarse
            coarse = (z @ basis) @ projected_t  # [B, N] approximate
            n = coarse.shape[1]  # the M largest, without negating N products first (19 vs 33 us)
            candidates = np.argpartition(coarse, n - self._m, axis=1)[:, n - self._m :]  # [B, M]
            # a batched matrix product, not einsum's loop (13 vs 27 us, one image)
            products = np.matmul(self._bank[candidates], z[:, :, None])[:, :, 0]  # [B, M]
        m = products.shape[1]
        kth = np.partition(products, m - self._k, axis=1)[:, m - self._k]  # the k-th largest
        # not np.linalg.norm, whose checks cost more than the sum (19 vs 4 us, one image)
        norm = np.sqrt(np.einsum("bd,bd->b", z, z))
        return 1.0 - kth / np.maximum(norm, 1e-12)
