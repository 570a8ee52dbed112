"""Pipeline run configs: one YAML per variant, ZenML's run-config form plus ``parameters``.

``parameters`` holds the pipeline's own pydantic configs (validated here, ``extra="forbid"``,
so a misplaced key fails before anything runs); every other key (``enable_cache``, ``settings``,
``steps``, ``schedule`` ...) is ZenML's and is handed to ``pipeline.with_options``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

P = TypeVar("P", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])


class ConfigError(ValueError):
    """A run config is unreadable or invalid; the message names the file and the key."""


def load_run_config(path: str | Path, params_model: type[P]) -> tuple[P, dict[str, Any]]:
    """Read a run config: ``(validated parameters, ZenML run options)``.

    Raises:
        ConfigError: when the file is missing, not YAML, or a parameter is invalid.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    params = raw.pop("parameters", {}) or {}
    return validate_params(params, params_model, str(path)), raw


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
