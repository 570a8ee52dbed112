"""Shared fixtures: telemetry off, tiny trees and images, synthetic source files."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from models.runtime.environment import TELEMETRY_OFF

for _key, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_key, _value)

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, give ZenML the source root that a plain pytest run has.

    ZenML derives its source root from the ``__main__`` module's file when a module with steps
    is imported in-process; an xdist worker's ``__main__`` has none. In a plain
    ``python -m pytest`` run it is pytest's own ``__main__``.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        from zenml.utils import source_utils

        source_utils.set_custom_source_root(str(Path(pytest.__file__).parent))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 IDX file (gzipped when the name ends in .gz)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(payload)


def make_fashion_like(
    root: Path, n_train: int = 200, n_test: int = 50, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic Fashion-MNIST IDX files under ``root/FashionMNIST/raw``; returns train arrays.

    Every image is distinct random texture with a class-dependent brightness, so the data passes
    the validation suite unless a test breaks it on purpose.
    """
    rng = np.random.default_rng(seed)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for part, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        base = 40 + 15 * labels[:, None, None]
        images = np.clip(base + rng.integers(0, 60, size=(n, 28, 28)), 0, 255).astype(np.uint8)
        write_idx(raw / f"{part}-images-idx3-ubyte.gz", images)
        write_idx(raw / f"{part}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
        out[part] = (images, labels)
    return out["train"]


@pytest.fixture
def fashion_like_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir holding synthetic Fashion-MNIST files; the Debian copy is hidden."""
    import models.data.sources

    monkeypatch.setattr(models.data.sources, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    make_fashion_like(tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture
def real_fashion_mnist_dir() -> Path:
    """The Fashion-MNIST that ``make setup`` fetched (skips when it is absent)."""
    data_dir = REPO / "data"
    if not (data_dir / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").exists():
        pytest.skip("Fashion-MNIST not fetched; run `make data`")
    return data_dir


@pytest.fixture(scope="session")
def square_classifier():
    """One tiny trained classifier (:func:`tests.toy_models.square_classifier`) per session."""
    from tests.toy_models import square_classifier

    return square_classifier()
