"""Pipeline run configs: one YAML per variant, ZenML's run-config form plus ``parameters``.

``parameters`` holds the pipeline's own pydantic configs (validated here, ``extra="forbid"``,
so a misplaced key fails before anything runs); every other key (``enable_cache``, ``settings``,
``steps``, ``schedule`` ...) is ZenML's and is handed to ``pipeline.with_options``.

A config may name another as its ``base`` (a path relative to itself): it is then that config
with this one's keys laid over it, so a variant states only what it changes. The parameters'
sections (``classifier``, ``triple.triple`` ...) merge key by key; a value (a number, a list, a
mapping such as ``study.seeds``) replaces the base's whole. Bases may have bases; a cycle is
refused.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

P = TypeVar("P", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])


class ConfigError(ValueError):
    """A run config is unreadable or invalid; the message names the file and the key."""


def load_run_config(path: str | Path, params_model: type[P]) -> tuple[P, dict[str, Any]]:
    """Read a run config, its ``base`` chain resolved: ``(validated parameters, ZenML options)``.

    Raises:
        ConfigError: when a file of the chain is missing or not YAML, the chain is a cycle, or a
            parameter is invalid.
    """
    params: dict[str, Any] = {}
    options: dict[str, Any] = {}
    chain = _chain(Path(path), ())
    for where, raw in chain:
        own = raw.pop("parameters", None) or {}
        if not isinstance(own, dict):
            raise ConfigError(f"{where}: parameters must be a mapping, got {type(own).__name__}")
        params = _laid_over(params, own, params_model)
        options = _laid_over(options, raw, None)
    bases = " over ".join(str(where) for where, _ in reversed(chain[:-1]))
    where = f"{path} (over {bases})" if bases else str(path)  # a bad key may be a base's
    return validate_params(params, params_model, where), options


def _chain(path: Path, seen: tuple[Path, ...]) -> list[tuple[Path, dict[str, Any]]]:
    """``path``'s base chain as (file, mapping), the furthest base first, ``path``'s own last."""
    if path.resolve() in seen:
        cycle = " -> ".join(str(p) for p in (*seen, path.resolve()))
        raise ConfigError(f"{path}: its base chain is a cycle ({cycle})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    base = raw.pop("base", None)
    if base is None:
        return [(path, raw)]
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base must be the path of another config, got {base!r}")
    return [*_chain(path.parent / base, (*seen, path.resolve())), (path, raw)]


def _laid_over(
    base: dict[str, Any], top: dict[str, Any], model: type[BaseModel] | None
) -> dict[str, Any]:
    """``top`` laid over ``base``.

    With a ``model``, only its sections (fields that are pydantic models) merge key by key; a
    field's value, a mapping such as ``study.seeds`` included, is replaced whole. Without one
    (ZenML's options), every mapping merges.
    """
    out = dict(base)
    for key, value in top.items():
        section = _section(model, key) if model is not None else None
        merges = model is None or section is not None
        if merges and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _laid_over(out[key], value, section)
        else:
            out[key] = value
    return out


def _section(model: type[BaseModel], key: str) -> type[BaseModel] | None:
    """The pydantic model of ``model``'s field ``key`` (``X | None`` read as ``X``), else None."""
    field = model.model_fields.get(key)
    if field is None:
        return None
    kind = field.annotation
    kinds = get_args(kind) if get_origin(kind) in (Union, UnionType) else (kind,)
    return next((k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)), None)


def validate_params(params: dict[str, Any], params_model: type[P], where: str) -> P:
    """Validate a parameters mapping, with errors that name the offending key path."""
    try:
        return params_model.model_validate(params)
    except ValidationError as err:
        lines = [f"{where}: invalid parameters:"]
        for e in err.errors():
            loc = ".".join(str(x) for x in e["loc"])
            lines.append(f"  parameters.{loc}: {e['msg']}")
        raise ConfigError("\n".join(lines)) from None


def with_step_tracker(
    options: dict[str, Any], steps: list[str], tracker: str | None
) -> dict[str, Any]:
    """Put ``experiment_tracker: tracker`` on each named step, keeping their other options."""
    if tracker is None:
        return options
    merged = dict(options)
    step_opts = {k: dict(v or {}) for k, v in (merged.get("steps") or {}).items()}
    for name in steps:
        step_opts.setdefault(name, {}).setdefault("experiment_tracker", tracker)
    merged["steps"] = step_opts
    return merged


def write_options(options: dict[str, Any]) -> str:
    """Write ZenML run options to a temporary YAML file for ``with_options(config_path=...)``."""
    handle = tempfile.NamedTemporaryFile("w", prefix="hiergan-run-", suffix=".yaml", delete=False)
    with handle:
        yaml.safe_dump(options, handle)
    return handle.name


def config_option(default: str, help_text: str) -> Callable[[F], F]:
    """The ``--config PATH`` click option every pipeline CLI takes (into ``config_path``)."""
    import click

    return click.option(
        "--config",
        "config_path",
        default=default,
        show_default=True,
        type=click.Path(dir_okay=False),
        help=help_text,
    )
