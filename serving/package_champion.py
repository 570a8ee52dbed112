"""Rebuild the bento of a registry alias (default ``champion``) in the local BentoML store.

For machines where the train run's own bento is not at hand (a Kubernetes training pod's store
is gone with the pod): ``python -m serving.package_champion`` prints the new bento tag, ready for
``bentoml containerize``. The registry is the stack's, or ``MLFLOW_TRACKING_URI`` when set.
"""

from __future__ import annotations

import argparse
import logging
import os


def package_alias(alias: str) -> str:
    """Build a bento around the classifier ``alias`` points at; return the bento tag."""
    import mlflow

    from registry.stack import use_stack_tracking_uri
    from registry.versions import load_classifier
    from serving.packaging import build_bento, save_bento_model

    if uri := os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
    else:
        use_stack_tracking_uri()
    classifier, tags = load_classifier(alias)
    labels = {"registry_version": tags["version"], "alias": alias}
    metadata = {k: v for k, v in tags.items() if k.startswith(("test_", "robust_"))}
    return build_bento(save_bento_model(classifier, labels, metadata), labels)


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m serving.package_champion [--alias champion]``."""
    from models.runtime.environment import quiet_telemetry

    quiet_telemetry()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alias", default="champion")
    args = parser.parse_args(argv)
    print(package_alias(args.alias))


if __name__ == "__main__":
    main()
