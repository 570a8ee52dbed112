"""Fixtures every serving test shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serving.fast_path import SERVING


@pytest.fixture(autouse=True)
def no_service_left_behind() -> Iterator[None]:
    """Each test starts and ends with no service registered for the fast path.

    ``HierganService.__init__`` registers itself in the module-level ``SERVING``, as a worker
    does once; a test that builds a service would otherwise leave it there for the next test
    of the same process (which tests share one depends on how pytest-xdist splits them).
    """
    SERVING.clear()
    yield
    SERVING.clear()
