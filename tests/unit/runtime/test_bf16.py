"""Where bf16 autocast is switched on: the setting, the device, the hardware."""

from __future__ import annotations

import pytest
import torch

from models.classifier.config import ClassifierConfig
from models.runtime.device import native_bf16, resolve_bf16

CPU = torch.device("cpu")


def test_none_means_cuda_only_and_bools_are_kept() -> None:
    assert resolve_bf16(None, CPU) is False
    assert resolve_bf16(None, torch.device("cuda")) is True
    assert resolve_bf16(True, CPU) is True and resolve_bf16(False, CPU) is False


def test_auto_follows_the_cpus_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert native_bf16(CPU) is False and resolve_bf16("auto", CPU) is False
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert native_bf16(CPU) is True and resolve_bf16("auto", CPU) is True
    # a torch without the private probes: no native bf16 assumed
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert native_bf16(CPU) is False
    assert native_bf16(torch.device("meta")) is False


def test_classifier_config_takes_auto_and_refuses_other_words() -> None:
    assert ClassifierConfig(bf16="auto").bf16 == "auto"
    with pytest.raises(ValueError, match="bf16"):
        ClassifierConfig(bf16="sometimes")
