"""Where ZenML looks for the project's code when it runs or ships a pipeline."""

from __future__ import annotations

from pathlib import Path

# The folder that holds models/, registry/, steps/, serving/ and pipelines/.
REPO_ROOT = Path(__file__).resolve().parents[1]


def use_repo_source_root() -> None:
    """Make the repository root ZenML's source root.

    Without a ``.zen`` folder ZenML takes the main module's folder as the source root: for
    ``python -m pipelines.train_pipeline`` that is ``pipelines/``, and a remote orchestrator's
    pods would download that folder alone, without ``steps/`` and ``models/``.
    """
    from zenml.utils import source_utils

    source_utils.set_custom_source_root(str(REPO_ROOT))
