"""Register the Kubernetes stack ``hiergan-k8s`` in one process (``infra/stacks/kubernetes.sh``).

What the stack holds and why is in the script's header and ``infra/README.md``. This module does
the registration through the ZenML client: one process and one login instead of a ZenML CLI
start-up per component (twelve of them took ~40 s on 2 cores). It reads the variables the
script documents, registers what is missing (secrets first: the components refer to them as
``{{secret.key}}``, no credential is written into a component) and activates the stack; a stack
that exists already is only activated.

    python -m registry.kubernetes_stack      # normally through infra/stacks/kubernetes.sh
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

STACK = "hiergan-k8s"
S3_SECRET = "hiergan-s3"
MLFLOW_SECRET = "hiergan-mlflow"
REQUIRED = {
    "HIERGAN_KUBE_CONTEXT": "the kubeconfig context of the cluster",
    "HIERGAN_REGISTRY": "the image registry, e.g. registry.example.internal/hiergan",
    "HIERGAN_S3_BUCKET": "the artifact store path, e.g. s3://hiergan-artifacts",
}


class StackSetupError(RuntimeError):
    """A variable the registration needs is missing; the message names it."""


def _need(env: Mapping[str, str], name: str, why: str) -> str:
    value = env.get(name, "")
    if not value:
        raise StackSetupError(f"set {name} ({why})")
    return value


def components(env: Mapping[str, str]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """``(component type, name, flavor, configuration)`` of every component, in order."""
    for name, why in REQUIRED.items():
        _need(env, name, why)
    region = env.get("HIERGAN_S3_REGION") or "us-east-1"
    client_kwargs: dict[str, str] = {"region_name": region}
    if env.get("HIERGAN_S3_ENDPOINT"):
        client_kwargs = {"endpoint_url": env["HIERGAN_S3_ENDPOINT"], "region_name": region}
    namespace = env.get("HIERGAN_NAMESPACE") or "hiergan"
    mlflow_uri = env.get("HIERGAN_MLFLOW_URI") or "http://mlflow.hiergan.svc.cluster.local:5000"
    return [
        (
            "artifact_store",
            "hiergan-s3",
            "s3",
            {
                "path": env["HIERGAN_S3_BUCKET"],
                "key": f"{{{{{S3_SECRET}.aws_access_key_id}}}}",
                "secret": f"{{{{{S3_SECRET}.aws_secret_access_key}}}}",
                "client_kwargs": client_kwargs,
            },
        ),
        # the ZenML API token reaches the pods as a Kubernetes Secret, not as a plain variable
        (
            "orchestrator",
            "hiergan-k8s",
            "kubernetes",
            {
                "kubernetes_context": env["HIERGAN_KUBE_CONTEXT"],
                "kubernetes_namespace": namespace,
                "pass_zenml_token_as_secret": True,
            },
        ),
        # the multi-pod (DDP) training steps, started from inside the orchestrator pod
        (
            "step_operator",
            "hiergan-k8s-pods",
            "kubernetes",
            {"kubernetes_namespace": namespace, "incluster": True},
        ),
        ("container_registry", "hiergan-registry", "default", {"uri": env["HIERGAN_REGISTRY"]}),
        ("image_builder", "hiergan-image-builder", "local", {}),
        (
            "experiment_tracker",
            "hiergan-mlflow-k8s",
            "mlflow",
            {
                "tracking_uri": mlflow_uri,
                "tracking_username": f"{{{{{MLFLOW_SECRET}.username}}}}",
                "tracking_password": f"{{{{{MLFLOW_SECRET}.password}}}}",
            },
        ),
        ("model_registry", "hiergan-mlflow-k8s-registry", "mlflow", {}),
    ]


def secrets(env: Mapping[str, str]) -> dict[str, dict[str, tuple[str, str]]]:
    """Each secret's keys and the variable each is read from (only when it does not exist)."""
    return {
        S3_SECRET: {
            "aws_access_key_id": ("AWS_ACCESS_KEY_ID", f"read into the ZenML secret {S3_SECRET}"),
            "aws_secret_access_key": (
                "AWS_SECRET_ACCESS_KEY",
                f"read into the ZenML secret {S3_SECRET}",
            ),
        },
        MLFLOW_SECRET: {
            "username": (
                "MLFLOW_TRACKING_USERNAME",
                f"read into the ZenML secret {MLFLOW_SECRET}",
            ),
            "password": (
                "MLFLOW_TRACKING_PASSWORD",
                f"read into the ZenML secret {MLFLOW_SECRET}",
            ),
        },
    }


def register(env: Mapping[str, str]) -> str:
    """Register what is missing, activate the stack; a sentence saying what was done."""
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    try:
        client.get_stack(STACK)
    except KeyError:
        pass
    else:
        client.activate_stack(STACK)
        return (
            f"Stack {STACK} exists; activated it (change a component with `zenml <type> update`)."
        )
    plan = components(env)  # every required variable checked before anything is written
    for name, keys in secrets(env).items():
        try:
            client.get_secret(name)
        except KeyError:
            values = {key: _need(env, var, why) for key, (var, why) in keys.items()}
            client.create_secret(name, values=values)
    for kind, name, flavor, configuration in plan:
        client.create_stack_component(
            name=name,
            flavor=flavor,
            component_type=StackComponentType(kind),
            configuration=configuration,
        )
    client.create_stack(
        name=STACK,
        components={StackComponentType(kind): name for kind, name, _, _ in plan},
    )
    client.activate_stack(STACK)
    return f"Registered and activated the stack {STACK}."


def main() -> int:
    """Register from the environment; exit 2 naming a missing variable."""
    os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
    try:
        print(register(os.environ))
    except StackSetupError as err:
        print(f"kubernetes stack: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
