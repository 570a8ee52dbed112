"""Integration fixtures: one smoke train run per test session, shared by the tests that need one.

With pytest-xdist (``-n``), tests that use ``smoke_run`` carry ``xdist_group("smoke_run")`` so
that ``--dist loadgroup`` sends them to one worker and the run is still made once.
"""

from __future__ import annotations

import pytest

from tests.integration.pipeline_runs import SmokeRun, smoke_train_run


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    """The smoke train run (ingest ... register_model), in a store of its own; skips without data.

    Its facts are read right after the run, so tests that add runs or move aliases in the same
    store (the registry flow) do not change what the smoke test sees.
    """
    from tests.conftest import REPO

    if not (REPO / "data" / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").exists():
        pytest.skip("Fashion-MNIST not fetched; run `make data`")
    return smoke_train_run(tmp_path_factory.mktemp("smoke_run"))
