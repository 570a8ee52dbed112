"""numba, where installed: the decorator the served score's compiled loops share.

numba is optional in the core: without it :func:`jit` returns the plain Python function and the
served score keeps its NumPy path (:mod:`models.ood.served_kernel`). Imported only when a served
score is built (``import models.ood`` does not pay numba's ~0.9 s import).
"""

from __future__ import annotations

from typing import Any

try:
    import numba
except ImportError:  # the core without numba: ServedScore serves one image in NumPy
    numba = None

# reassociation lets the sums use vector registers; no assumptions about inf or NaN (the
# candidates' search starts from the first M products, the minima from a column's value)
FASTMATH = {"reassoc", "contract"}


def jit(func: Any = None, *, inline: str = "never") -> Any:
    """``func`` compiled by numba at its first call (with numba), else ``func`` as it is.

    The machine code is cached beside this file or in numba's user-wide cache; where neither
    is writable (a read-only image without a home) numba refuses to cache, and ``func`` is
    compiled afresh in every process instead of failing the import. ``@jit(inline="always")``
    compiles a helper into its callers.
    """
    if func is None:
        return lambda f: jit(f, inline=inline)
    if numba is None:
        return func
    options = {"nogil": True, "fastmath": FASTMATH, "inline": inline}
    try:
        return numba.njit(cache=True, **options)(func)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(cache=False, **options)(func)
