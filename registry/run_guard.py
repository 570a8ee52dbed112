"""One training run at a time: a lock the train pipeline takes in the ZenML server.

A scheduled retrain (a Kubernetes CronJob: ``concurrencyPolicy: Forbid`` covers only the
CronJob's own Jobs), a manual run and a monitor-triggered retrain must never train at once. The
first step of the train pipeline claims the slot: every other run of the same pipeline that is
not finished either

- is **alive** and older: this run stops at once, naming it (the older run keeps the slot; two
  runs that start together both see each other, and only the younger one stops), or
- is **dead** although ZenML still says ``running`` (its process was killed with SIGKILL, its
  pod evicted): it is marked ``failed`` with the reason, in its status and metadata, and this
  run goes on, resuming that run's GAN checkpoints (same config and data, same run key).

A run is dead when its recorded process (host, pid and the pid's start time, written by its own
guard step) no longer exists on this host (local runs: their process is the evidence either
way), or, for a run elsewhere (a pod), when neither a step heartbeat (ZenML sends one every 15 s
while a containerized step runs; the multi-pod steps send their own) nor a step start or end has
been seen for ``stale_after_s``.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)
OWNER_KEY = "run_guard"


class RunGuardConfig(BaseModel):
    """The train pipeline's lock (``run_guard:`` in the pipeline YAML)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    stale_after_s: float = Field(
        1800.0,
        ge=60,
        description="a run with no heartbeat nor step start/end for this long is dead",
    )


class RunGuardError(RuntimeError):
    """Another run of the pipeline is still alive: this one does not start."""


@dataclass(frozen=True)
class RunView:
    """What the guard knows about one unfinished run."""

    id: Any
    name: str
    status: str
    created: datetime
    last_sign_of_life: datetime | None
    owner: dict[str, Any]


def owner_record() -> dict[str, Any]:
    """This process: host, pid and the pid's start time (to tell a reused pid apart)."""
    import psutil

    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_started": psutil.Process().create_time(),
    }


def why_dead(view: RunView, now: datetime, stale_after_s: float, host: str) -> str | None:
    """Why ``view``'s run is dead, or None when it may be alive."""
    import psutil

    owner = view.owner
    if owner.get("host") == host and owner.get("pid"):
        # on this host the process itself is the evidence, either way (the local orchestrator
        # sends no heartbeats: a long step is silent but alive)
        pid = int(owner["pid"])
        try:
            started = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            started = None
        if started is None or abs(started - float(owner.get("pid_started", 0))) > 1.0:
            return f"its process (pid {pid} on {host}) is gone: killed without a chance to report"
        return None
    last = view.last_sign_of_life or view.created
    age = (now - _utc(last)).total_seconds()
    if age > stale_after_s:
        return (
            f"no step heartbeat, start or end for {age:.0f} s (since {_utc(last).isoformat()}; "
            f"limit {stale_after_s:.0f} s): its process or pod is gone"
        )
    return None


def claim_run_slot(run_id: Any, stale_after_s: float) -> dict[str, Any]:
    """Claim the pipeline's slot for run ``run_id`` (see the module docstring).

    Returns:
        What was decided: the runs marked failed (name and why), this run's owner record.

    Raises:
        RunGuardError: naming the older run that is still alive.
    """
    from zenml import log_metadata
    from zenml.client import Client

    client = Client()
    current = client.get_pipeline_run(run_id)
    owner = owner_record()
    log_metadata(metadata={OWNER_KEY: owner}, run_id_name_or_prefix=current.id)
    now = datetime.now(UTC)
    marked, blockers = [], []
    for run in _unfinished_runs(client, current):
        view = _view(run)
        why = why_dead(view, now, stale_after_s, owner["host"])
        if why is not None:
            mark_failed(run, f"marked failed by run {current.name!r}: {why}", current.name)
            marked.append({"run": view.name, "why": why})
            logger.warning("Run %s was still 'running' but is dead: %s", view.name, why)
        elif _utc(view.created) < _utc(current.created):
            blockers.append(view)
    if blockers:
        b = blockers[0]
        raise RunGuardError(
            f"{current.pipeline.name} run {b.name!r} (started {_utc(b.created).isoformat()}, "
            f"status {b.status}) is still running, so run {current.name!r} does not start: "
            "one training run at a time. It is alive (a heartbeat or step progress within "
            f"{stale_after_s:.0f} s); if it is not, it will be marked failed once that passes."
        )
    return {"owner": owner, "marked_failed": marked}


def mark_failed(run: Any, reason: str, by_run: str) -> None:
    """Set an unfinished run and its unfinished steps to ``failed``, with the reason."""
    from zenml import log_metadata
    from zenml.client import Client
    from zenml.enums import ExecutionStatus
    from zenml.models import PipelineRunUpdate, StepRunUpdate

    store = Client().zen_store
    now = datetime.now(UTC)
    for step in run.steps.values():
        if not ExecutionStatus(step.status).is_finished:
            store.update_run_step(
                step.id, StepRunUpdate(status=ExecutionStatus.FAILED, end_time=now)
            )
    store.update_run(
        run.id, PipelineRunUpdate(status=ExecutionStatus.FAILED, status_reason=reason[:250])
    )
    log_metadata(
        metadata={"marked_failed": {"by_run": by_run, "reason": reason, "at": now.isoformat()}},
        run_id_name_or_prefix=run.id,
    )


def _unfinished_runs(client: Any, current: Any) -> list[Any]:
    from zenml.enums import ExecutionStatus

    runs = client.list_pipeline_runs(
        pipeline_id=current.pipeline.id, sort_by="asc:created", size=100, hydrate=True
    )
    return [
        r for r in runs.items if r.id != current.id and not ExecutionStatus(r.status).is_finished
    ]


def _view(run: Any) -> RunView:
    times = [run.start_time, run.created]
    for step in run.steps.values():
        times += [step.latest_heartbeat, step.start_time, step.end_time]
    owner = run.run_metadata.get(OWNER_KEY) or {}
    return RunView(
        id=run.id,
        name=run.name,
        status=str(run.status.value if hasattr(run.status, "value") else run.status),
        created=run.created,
        last_sign_of_life=max((_utc(t) for t in times if t is not None), default=None),
        owner=owner if isinstance(owner, dict) else {},
    )


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
