"""The MLflow model registry: log a classifier as a version of ``hiergan``, move aliases, load.

Aliases: ``challenger`` is the newest registered version; ``champion`` is what serves. The
history of champions lives in the registered model's ``champion_history`` tag so that a rollback
knows where to go. Nothing here imports ZenML (the stack's tracking URI is :mod:`registry.stack`'s).
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from models.classifier.io import TrainedClassifier
from models.data.ingest import DatasetConfig
from registry.requirements import PYFUNC_PACKAGES, pinned_requirements

logger = logging.getLogger(__name__)

MODEL_NAME = "hiergan"
CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
MODEL_HASH_TAG = "model_hash"
REPO = Path(__file__).resolve().parents[1]
# MLflow refuses tag values over 5000 characters.
MAX_TAG_CHARS = 5000


class RegistryError(RuntimeError):
    """The registry does not hold what was asked for (no such alias, no previous champion)."""


@dataclass(frozen=True)
class RegisteredClassifier:
    """A classifier loaded from the registry, with the version it came from."""

    classifier: TrainedClassifier
    version: str
    tags: dict[str, str]
    directory: Path


def git_commit() -> str:
    """The repository's commit, with ``-dirty`` when there are uncommitted changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def model_content_hash(classifier: TrainedClassifier) -> str:
    """SHA-256 of what decides the model's answers: weights, calibration, tree, config, OOD guard.

    Run facts (timings, run keys) are left out, so the same model trained twice (or a cached
    re-run) has the same hash.
    """
    h = hashlib.sha256()
    for prefix, state in (("", classifier.state), ("ood/", classifier.ood_state)):
        for key in sorted(state):
            tensor = state[key].detach().cpu().contiguous()
            h.update(f"{prefix}{key}:{tensor.dtype}:{list(tensor.shape)}".encode())
            # reshape: a 0-dim tensor (batch norm's step counter) has no byte view of its own
            h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(json.dumps([c.to_dict() for c in classifier.calibration], sort_keys=True).encode())
    h.update(json.dumps(classifier.ood_info, sort_keys=True, default=str).encode())
    h.update(classifier.tree.to_json().encode())
    h.update(classifier.config.model_dump_json().encode())
    return h.hexdigest()


def version_with_hash(content_hash: str, name: str = MODEL_NAME) -> ModelVersion | None:
    """The oldest registered version whose ``model_hash`` tag is ``content_hash``, if any."""
    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    same = [v for v in versions if v.tags.get(MODEL_HASH_TAG) == content_hash]
    return min(same, key=lambda v: int(v.version)) if same else None


def log_classifier_version(
    classifier: TrainedClassifier, tags: Mapping[str, Any], name: str = MODEL_NAME
) -> tuple[ModelVersion, bool]:
    """Register the classifier as a new version of ``name`` unless it is registered already.

    A model whose content hash (:func:`model_content_hash`) some version already has is not
    registered again: that version gets the ``challenger`` alias and a ``reregistered_by`` tag,
    and is returned with ``reused=True``. Otherwise the classifier is logged as a pyfunc model in
    the active run (weights stay safetensors; the pyfunc is logged from code, so nothing is
    pickled), registered, tagged with ``tags`` (stringified, truncated to MLflow's limit) and
    aliased ``challenger``.

    Returns:
        The version, and whether it was an existing one.
    """
    from mlflow.models import infer_signature

    content_hash = model_content_hash(classifier)
    existing = version_with_hash(content_hash, name)
    client = MlflowClient()
    if existing is not None:
        version = str(existing.version)
        runs = json.loads(existing.tags.get("reregistered_by", "[]"))
        runs.append(str(tags.get("zenml_run", "?")))
        client.set_model_version_tag(name, version, "reregistered_by", _tag_value(runs))
        client.set_registered_model_alias(name, CHALLENGER, version)
        logger.info(
            "%s version %s already holds this model (content hash %s): reused it, no new "
            "version; it is %r",
            name, version, content_hash[:12], CHALLENGER,
        )  # fmt: skip
        return client.get_model_version(name, version), True

    with tempfile.TemporaryDirectory() as tmp:
        classifier.save(Path(tmp) / "classifier")
        size = classifier.architecture.image_size
        example = _example_input(size, classifier.architecture.channels)
        signature = infer_signature(example, params={"top_k": 3})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(REPO / "serving" / "mlflow_model.py"),
            artifacts={"classifier": str(Path(tmp) / "classifier")},
            code_paths=[str(REPO / "models"), str(REPO / "serving")],
            pip_requirements=pinned_requirements(PYFUNC_PACKAGES),
            signature=signature,
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    for key, value in {**tags, MODEL_HASH_TAG: content_hash}.items():
        client.set_model_version_tag(name, version, key, _tag_value(value))
    client.set_registered_model_alias(name, CHALLENGER, version)
    logger.info("Registered %s version %s as %r", name, version, CHALLENGER)
    return client.get_model_version(name, version), False


def version_tags(
    classifier: TrainedClassifier,
    evaluation: dict[str, Any],
    robustness: dict[str, Any] | None,
    dataset: DatasetConfig,
    ood: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a registered version says about itself: test metrics, data, config, robustness, OOD.

    ``ood_auroc`` is the served OOD scorer's worst AUROC over the project's OOD sets.
    """
    tree = classifier.tree
    tags: dict[str, Any] = {
        f"test_accuracy_{level}": evaluation[f"global_accuracy_{level}"]
        for level in tree.level_names
    }
    tags["test_accuracy_fine"] = evaluation[f"global_accuracy_{tree.level_names[-1]}"]
    tags["test_ece_fine"] = evaluation["ece_fine_after"]
    tags["test_images"] = evaluation["test_images"]
    tags["dataset_hash"] = evaluation.get("dataset_hash") or classifier.info.get("dataset_hash")
    tags["dataset_config"] = dataset.model_dump(mode="json")
    tags["classifier_config"] = classifier.config.model_dump(mode="json")
    tags["temperatures"] = classifier.temperatures
    tags["calibration_methods"] = classifier.calibration_methods
    for key, value in (robustness or {}).items():
        if key.startswith("robust_accuracy") and isinstance(value, int | float):
            tags[key] = value
    ood = ood or {}
    for key in ("ood_auroc", "ood_auroc_mean", "ood_scorer", "ood_threshold"):
        if ood.get(key) is not None:
            tags[key] = ood[key]
    return tags


def _example_input(size: int, channels: int) -> Any:
    import numpy as np

    return np.zeros((1, size, size, channels), dtype=np.uint8)


def _tag_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_TAG_CHARS else text[: MAX_TAG_CHARS - 3] + "..."


def version_by_alias(alias: str, name: str = MODEL_NAME) -> ModelVersion | None:
    """The version an alias points at, or None when the alias (or the model) does not exist."""
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def load_version(version: str, name: str = MODEL_NAME) -> RegisteredClassifier:
    """Download a version's classifier directory and load it (safetensors + JSON)."""
    client = MlflowClient()
    mv = client.get_model_version(name, version)
    root = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}"))
    directory = root / "artifacts" / "classifier"
    if not directory.is_dir():
        raise RegistryError(f"{name} version {version} has no classifier artifact in {root}")
    classifier = TrainedClassifier.load(directory)
    return RegisteredClassifier(classifier, version, dict(mv.tags), directory)


def load_classifier(
    alias: str = CHAMPION, name: str = MODEL_NAME
) -> tuple[TrainedClassifier, dict[str, str]]:
    """The classifier an alias points at, and its version's tags (``version`` included)."""
    mv = version_by_alias(alias, name)
    if mv is None:
        raise RegistryError(f"registered model {name!r} has no {alias!r} alias")
    loaded = load_version(str(mv.version), name)
    return loaded.classifier, {**loaded.tags, "version": loaded.version}


def champion_history(name: str = MODEL_NAME) -> list[str]:
    """Versions that have been champion, oldest first (the last one is the current champion)."""
    try:
        tags = MlflowClient().get_registered_model(name).tags
    except MlflowException:
        return []
    return [str(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]


def set_champion(version: str, name: str = MODEL_NAME) -> None:
    """Point ``champion`` at ``version`` (one alias update), then record it in the history."""
    client = MlflowClient()
    client.set_registered_model_alias(name, CHAMPION, version)
    history = [v for v in champion_history(name) if v != version] + [version]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    logger.info("%s version %s is now %r", name, version, CHAMPION)


def rollback_champion(name: str = MODEL_NAME) -> tuple[str, str]:
    """Point ``champion`` back at the previous champion; returns ``(from_version, to_version)``."""
    client = MlflowClient()
    current = version_by_alias(CHAMPION, name)
    history = champion_history(name)
    if current is None:
        raise RegistryError(f"registered model {name!r} has no {CHAMPION!r} to roll back")
    current_version = str(current.version)
    earlier = [v for v in history if v != current_version]
    if not earlier:
        raise RegistryError(
            f"{name} version {current_version} is the only champion there has been: "
            "nothing to roll back to"
        )
    previous = earlier[-1]
    client.set_registered_model_alias(name, CHAMPION, previous)
    # the rolled-back version leaves the history, so a second rollback goes one further back
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(earlier))
    logger.info("%s champion rolled back from version %s to %s", name, current_version, previous)
    return current_version, previous


def describe_registry(
    name: str = MODEL_NAME, robust_metric: str = "robust_accuracy_fine_pgd_eps0.1"
) -> str:
    """A table of the registered versions: aliases, test accuracy, ECE, robust accuracy, bento."""
    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException as err:
        return f"no registered model {name!r} ({err})"
    aliases: dict[str, list[str]] = {}
    for alias, version in client.get_registered_model(name).aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    lines = [
        f"registered model {name!r}; champion history: {champion_history(name)}",
        f"| version | aliases | test acc (fine) | ECE (fine) | {robust_metric} | bento | git |",
        "|---|---|---|---|---|---|---|",
    ]
    for mv in sorted(versions, key=lambda v: int(v.version)):
        tags = mv.tags
        numbers = [
            f"{float(tags[key]):.4f}" if key in tags else "-"
            for key in ("test_accuracy_fine", "test_ece_fine", robust_metric)
        ]
        lines.append(
            f"| {mv.version} | {', '.join(sorted(aliases.get(str(mv.version), []))) or '-'} "
            f"| {' | '.join(numbers)} | {tags.get('bento_tag', '-')} "
            f"| {tags.get('git_commit', '-')[:12]} |"
        )
    return "\n".join(lines)


def load_monitored_model(
    model_dir: str | None, alias: str
) -> tuple[TrainedClassifier, dict[str, str]]:
    """The classifier to monitor: a saved directory, else the registry's version at ``alias``.

    Returns:
        The classifier and where it came from (``source``, ``dataset_hash``, ``version``).
    """
    if model_dir:
        classifier = TrainedClassifier.load(model_dir)
        return classifier, {
            "source": f"dir:{model_dir}",
            "dataset_hash": classifier.info.get("dataset_hash", ""),
        }
    classifier, tags = load_classifier(alias)
    return classifier, {
        "source": f"registry:{MODEL_NAME}@{alias} (version {tags.get('version', '?')})",
        "dataset_hash": tags.get("dataset_hash") or classifier.info.get("dataset_hash", ""),
        "version": tags.get("version", ""),
    }
