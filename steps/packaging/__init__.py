"""Packaging stage: the BentoML bento and the MLflow registry version (alias challenger)."""

from steps.packaging.package_bento import package_bento
from steps.packaging.register_model import register_model

__all__ = [
    "package_bento",
    "register_model",
]
