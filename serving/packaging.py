"""BentoML packaging: the classifier as a BentoML model, and a bento of the service around it."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import bentoml

from models.classifier.io import TrainedClassifier
from registry.requirements import SERVICE_PACKAGES, pinned_requirements
from serving.config import BENTO_MODEL_ENV, BENTO_MODEL_NAME

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
SERVICE = "serving.service:HierganService"
# Only what the service imports goes into the bento: itself and the core (no registry, no steps).
BENTO_INCLUDE = [
    "serving/*.py",
    "serving/service.yaml",
    "models/**/*.py",
    "models/tree/trees/*.yaml",
]


def save_bento_model(
    classifier: TrainedClassifier, labels: dict[str, str], metadata: dict[str, Any]
) -> str:
    """Store the classifier directory (safetensors + JSON) as a BentoML model; return its tag."""
    with bentoml.models.create(BENTO_MODEL_NAME, labels=labels, metadata=metadata) as model:
        with tempfile.TemporaryDirectory() as tmp:
            classifier.save(tmp)
            for item in Path(tmp).iterdir():
                shutil.copy2(item, Path(model.path) / item.name)
    tag = str(model.tag)
    logger.info("BentoML model %s saved", tag)
    return tag


def build_bento(model_tag: str, labels: dict[str, str]) -> str:
    """Build a bento of the service pinned to ``model_tag``; return the bento's tag."""
    from bentoml._internal.bento.build_config import BentoEnvSchema  # build() wants instances

    packages = pinned_requirements(SERVICE_PACKAGES)
    bento = bentoml.bentos.build(
        SERVICE,
        name="hiergan_service",
        labels=labels,
        description="hiergan: hierarchical classification of images over HTTP.",
        include=BENTO_INCLUDE,
        models=[model_tag],
        envs=[BentoEnvSchema(name=BENTO_MODEL_ENV, value=model_tag)],
        python={"packages": packages, "lock_packages": False},
        docker={"python_version": "3.11"},
        build_ctx=str(REPO),
    )
    logger.info("Bento %s built", bento.tag)
    return str(bento.tag)
