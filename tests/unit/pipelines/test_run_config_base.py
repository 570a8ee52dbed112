"""A run config that names a ``base`` is that config with its own keys laid over it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from pipelines.run_config import ConfigError, load_run_config


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    view: str = "weak"
    weight: float = 0.1


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: int = 1
    seeds: dict[float, list[int]] = {}
    inner: Inner | None = None


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    study: Section = Section()
    label: str = ""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


BASE = """
enable_cache: false
settings: {docker: {image: a, env: {X: "1"}}}
parameters:
  label: base
  study:
    steps: 2000
    seeds: {0.01: [0, 1, 2], 0.1: [0]}
    inner: {view: weak, weight: 0.5}
"""


def test_a_variant_states_only_what_it_changes(tmp_path: Path) -> None:
    _write(tmp_path, "base.yaml", BASE)
    child = _write(
        tmp_path,
        "variants/child.yaml",
        """
base: ../base.yaml
settings: {docker: {env: {Y: "2"}}}
parameters:
  study:
    seeds: {0.01: [0]}
    inner: {view: strong}
""",
    )
    params, options = load_run_config(child, Params)
    assert params.label == "base" and params.study.steps == 2000  # inherited
    assert params.study.inner == Inner(view="strong", weight=0.5)  # a section merges key by key
    assert params.study.seeds == {0.01: [0]}  # a value, even a mapping, is replaced whole
    # ZenML's options merge as mappings; the base key itself is not handed to ZenML
    assert options == {
        "enable_cache": False,
        "settings": {"docker": {"image": "a", "env": {"X": "1", "Y": "2"}}},
    }


def test_bases_chain_and_the_nearest_wins(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", BASE)
    _write(tmp_path, "b.yaml", "base: a.yaml\nparameters: {study: {steps: 8000}}\n")
    c = _write(tmp_path, "c.yaml", "base: b.yaml\nparameters: {label: c}\n")
    params, _ = load_run_config(c, Params)
    assert (params.label, params.study.steps, params.study.inner.weight) == ("c", 8000, 0.5)


def test_a_cycle_is_refused_naming_the_files(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.yaml", "base: b.yaml\n")
    _write(tmp_path, "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"a\.yaml: its base chain is a cycle .*b\.yaml"):
        load_run_config(a, Params)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("base: missing.yaml\n", r"cannot read config .*missing\.yaml"),
        ("base: [a.yaml]\n", r"base must be the path of another config, got \['a.yaml'\]"),
        ("base: bad.yaml\n", r"bad\.yaml is not valid YAML"),
    ],
)
def test_a_broken_base_fails_naming_it(tmp_path: Path, text: str, named: str) -> None:
    _write(tmp_path, "bad.yaml", "parameters: [unclosed\n")
    child = _write(tmp_path, "child.yaml", text)
    with pytest.raises(ConfigError, match=named):
        load_run_config(child, Params)


def test_a_bad_key_fails_naming_the_config_and_its_bases(tmp_path: Path) -> None:
    _write(tmp_path, "base.yaml", BASE.replace("steps: 2000", "stepz: 2000"))  # the base's typo
    child = _write(tmp_path, "child.yaml", "base: base.yaml\nparameters: {label: child}\n")
    with pytest.raises(ConfigError, match=r"child\.yaml \(over .*base\.yaml\): invalid parameters"):
        load_run_config(child, Params)


def test_parameters_that_are_not_a_mapping_fail_naming_the_file(tmp_path: Path) -> None:
    _write(tmp_path, "base.yaml", BASE)
    child = _write(tmp_path, "child.yaml", "base: base.yaml\nparameters: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"child\.yaml: parameters must be a mapping, got list"):
        load_run_config(child, Params)
