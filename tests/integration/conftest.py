"""Integration fixtures: one smoke train run per test session, shared by the tests that need one.

Under pytest-xdist every worker has its own session, so the run is made by whichever worker asks
first, in the base temporary directory the workers share, under a file lock; the others wait for
it and read what it left (the recipe of pytest-xdist's documentation for once-per-run fixtures).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest
from filelock import FileLock

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
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # one process: an ordinary session fixture
        return smoke_train_run(tmp_path_factory.mktemp("smoke_run"))
    shared = tmp_path_factory.getbasetemp().parent
    record = shared / "smoke_run.json"
    with FileLock(str(shared / "smoke_run.lock")):
        if not record.exists():
            run = smoke_train_run(Path(shared / "smoke_run"))
            record.write_text(json.dumps(asdict(run), default=str))
    saved = json.loads(record.read_text())
    return SmokeRun(
        tmp=Path(saved["tmp"]),
        env=saved["env"],
        config=Path(saved["config"]),
        stdout=saved["stdout"],
        facts=saved["facts"],
    )
