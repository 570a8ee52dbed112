"""How many intra-op threads a training process takes."""

from __future__ import annotations

import os

import pytest
import torch

from models.runtime.device import configure_threads


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_omp_num_threads_is_the_users_word(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert configure_threads() == 1 == torch.get_num_threads()
    assert configure_threads(2) == 2  # an explicit count (the config's num_threads) wins


def test_without_it_every_core_and_ranks_split_them(monkeypatch: pytest.MonkeyPatch) -> None:
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert configure_threads() == cores
    # torchrun sets OMP_NUM_THREADS=1 itself; the ranks on one machine share its cores instead
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert configure_threads() == max(1, cores // 2)
