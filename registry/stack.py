"""The local ZenML stack with an MLflow experiment tracker and model registry.

``ensure_stack()`` creates it on first use (idempotently) and activates it, unless the user has
activated a stack of their own, which is then used as it is.
"""

from __future__ import annotations

import logging

import mlflow
from zenml.client import Client
from zenml.enums import StackComponentType

from registry.versions import RegistryError

logger = logging.getLogger(__name__)

LOCAL_STACK = "hiergan-local"
TRACKER = "hiergan-mlflow"
REGISTRY = "hiergan-mlflow-registry"


def ensure_stack() -> str | None:
    """Make sure a usable stack is active; return its experiment tracker's name (or None).

    The default stack counts as "not chosen by the user": it is replaced by ``hiergan-local``
    (default orchestrator and artifact store, plus MLflow tracker and registry). Any other
    active stack is respected.
    """
    client = Client()
    active = client.active_stack_model
    if active.name not in ("default", LOCAL_STACK):
        logger.info("Using the active stack %r as it is.", active.name)
        trackers = active.components.get(StackComponentType.EXPERIMENT_TRACKER) or []
        if not trackers:
            logger.warning(
                "Stack %r has no experiment tracker: nothing is logged to MLflow.", active.name
            )
            return None
        return trackers[0].name
    if active.name == "default":
        _create_local_stack(client)
        client.activate_stack(LOCAL_STACK)
        logger.info("Activated the ZenML stack %r.", LOCAL_STACK)
    return TRACKER


def _create_local_stack(client: Client) -> None:
    existing = {
        c.name
        for kind in (StackComponentType.EXPERIMENT_TRACKER, StackComponentType.MODEL_REGISTRY)
        for c in client.list_stack_components(type=kind, size=100).items
    }
    # No tracking_uri: ZenML keeps a SQLite MLflow store inside the local artifact store and
    # creates experiments with an explicit artifact location (no stray ./mlruns).
    for name, kind in (
        (TRACKER, StackComponentType.EXPERIMENT_TRACKER),
        (REGISTRY, StackComponentType.MODEL_REGISTRY),
    ):
        if name not in existing:
            client.create_stack_component(
                name=name, flavor="mlflow", component_type=kind, configuration={}
            )
    stacks = {s.name for s in client.list_stacks(size=100).items}
    if LOCAL_STACK not in stacks:
        default = client.get_stack("default")
        client.create_stack(
            name=LOCAL_STACK,
            components={
                StackComponentType.ORCHESTRATOR: default.components[
                    StackComponentType.ORCHESTRATOR
                ][0].name,
                StackComponentType.ARTIFACT_STORE: default.components[
                    StackComponentType.ARTIFACT_STORE
                ][0].name,
                StackComponentType.EXPERIMENT_TRACKER: TRACKER,
                StackComponentType.MODEL_REGISTRY: REGISTRY,
            },
        )


def tracking_uri() -> str | None:
    """The MLflow tracking URI of the active stack's tracker (for ``mlflow ui``)."""
    tracker = Client().active_stack.experiment_tracker
    if tracker is None or not hasattr(tracker, "get_tracking_uri"):
        return None
    return tracker.get_tracking_uri()


def use_stack_tracking_uri() -> str:
    """Point MLflow at the active ZenML stack's tracking store (the local one by default)."""
    ensure_stack()
    uri = tracking_uri()
    if not uri:
        raise RegistryError("the active ZenML stack has no MLflow experiment tracker")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def answer_first_visit_survey() -> None:
    """Answer the dashboard's first-visit survey for the active user: no e-mail, no newsletter.

    ZenML 0.98's dashboard shows its survey (name, e-mail, a newsletter box ticked by default,
    role, infrastructure) to a user whose ``email_opted_in`` is unset, or whose
    ``user_metadata`` has neither ``finished_onboarding_survey`` nor ``awareness_channels``
    (the bundled dashboard's ``zen_server/dashboard/assets/index-*.js``). Setting
    ``email_opted_in`` to false ("skipped") and ``finished_onboarding_survey`` opens the
    dashboard on the runs, as telemetry is off everywhere else.
    """
    client = Client()
    user = client.get_user(client.active_user.id)  # active_user is cached
    metadata = dict(user.user_metadata or {})
    if user.email_opted_in is False and metadata.get("finished_onboarding_survey"):
        return
    metadata["finished_onboarding_survey"] = True
    client.update_user(user.id, updated_email_opt_in=False, updated_metadata=metadata)
    logger.info("ZenML user %s: first-visit survey answered (no e-mail, no newsletter)", user.name)


def main() -> None:
    """CLI: ``python -m registry.stack [ensure|tracking-uri|dashboard-ready]``."""
    import sys

    command = sys.argv[1] if len(sys.argv) > 1 else "ensure"
    if command == "ensure":
        print(f"experiment tracker: {ensure_stack()}")
    elif command == "tracking-uri":
        ensure_stack()
        print(tracking_uri() or "")
    elif command == "dashboard-ready":
        ensure_stack()
        answer_first_visit_survey()
    else:
        sys.exit(f"unknown command {command!r}; use 'ensure', 'tracking-uri' or 'dashboard-ready'")


if __name__ == "__main__":
    main()
