"""Pinned requirements of what the registry and the bento carry: this environment's versions."""

from __future__ import annotations

from importlib.metadata import version

# What the MLflow pyfunc needs (MLflow would spend ~25 s inferring it).
PYFUNC_PACKAGES = ["mlflow", "torch", "numpy", "safetensors", "pydantic", "pyyaml", "pillow"]
# What the BentoML service needs at run time; the bento's image installs these, nothing else.
# numba compiles the OOD guard's one-image score (models/ood/served_kernel.py); the pyfunc does
# without it (the same score in NumPy).
SERVICE_PACKAGES = [
    "bentoml",
    "torch",
    "numpy",
    "numba",
    "safetensors",
    "pydantic",
    "pyyaml",
    "pillow",
]


def pinned_requirements(packages: list[str]) -> list[str]:
    """``name==version`` for each package as installed here (local version labels dropped)."""
    return [f"{p}=={version(p).split('+')[0]}" for p in packages]
