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
    """Under pytest-xdist, give ZenML the source root that a plain pytest run has; one thread.

    ZenML derives its source root from the ``__main__`` module's file when a module with steps
    is imported in-process; an xdist worker's ``__main__`` has none. In a plain
    ``python -m pytest`` run it is pytest's own ``__main__``.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        from zenml.utils import source_utils

        source_utils.set_custom_source_root(str(Path(pytest.__file__).parent))
        # The workers share the cores: one intra-op thread each, and for every process they
        # start (models.runtime.device.configure_threads reads it). Two workers with a thread
        # per core each make OpenMP threads wait on each other.
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


# The integration files, longest first (measured on 2 cores). The tests that share the smoke
# train run (fixture ``smoke_run``, the registry flow first: it builds the run on the way) go
# to one worker, these to the other.
SLOW_FIRST = (
    "tests/integration/test_k8s_stack.py",
    "tests/integration/test_imagenet_pipeline.py",
    "tests/integration/test_triple_pipeline.py",
    "tests/integration/test_monitor_pipeline.py",
    "tests/integration/test_run_guard.py",
    "tests/integration/test_distributed_training.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the session so that two workers finish together.

    pytest-xdist's ``worksteal`` hands each worker one contiguous half of this order and lets an
    idle worker take the tail of the other's queue. The first half starts with the smoke-run
    tests, the second with the other integration tests; unit tests fill both halves' tails,
    which is what gets stolen.
    """

    def slow_rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return SLOW_FIRST.index(path) if path in SLOW_FIRST else len(SLOW_FIRST)

    smoke = sorted(
        (i for i in items if "smoke_run" in getattr(i, "fixturenames", ())),
        key=lambda i: "registry_flow" not in i.nodeid,
    )
    integration = sorted(
        (i for i in items if i.nodeid.startswith("tests/integration/") and i not in smoke),
        key=slow_rank,
    )
    unit = [i for i in items if not i.nodeid.startswith("tests/integration/")]
    split = max(0, len(items) // 2 - len(smoke))
    items[:] = smoke + unit[:split] + integration + unit[split:]


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
