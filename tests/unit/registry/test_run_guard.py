"""When a run that ZenML calls running is dead: its process is gone, or it stopped reporting."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

from registry.run_guard import RunView, owner_record, why_dead

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
HOST = socket.gethostname()


def view(last_seen: timedelta | None, owner: dict) -> RunView:
    return RunView(
        id="x",
        name="train_pipeline-1",
        status="running",
        created=NOW - timedelta(hours=2),
        last_sign_of_life=None if last_seen is None else NOW - last_seen,
        owner=owner,
    )


def test_a_run_whose_process_is_gone_is_dead_at_once():
    gone = {"host": HOST, "pid": 2**22 + 17, "pid_started": 1.0}  # beyond pid_max: no such pid
    assert "is gone" in why_dead(view(timedelta(seconds=5), gone), NOW, 1800, HOST)


def test_a_reused_pid_does_not_pass_for_the_old_process():
    me = owner_record()
    reused = me | {"pid_started": me["pid_started"] - 1000}  # this pid, but started earlier
    assert "is gone" in why_dead(view(timedelta(seconds=5), reused), NOW, 1800, HOST)


def test_a_live_process_or_recent_heartbeat_is_alive():
    assert why_dead(view(timedelta(seconds=5), owner_record()), NOW, 1800, HOST) is None
    # a long, silent step of a local run: its process is there, so it is alive
    assert why_dead(view(timedelta(hours=5), owner_record()), NOW, 1800, HOST) is None
    elsewhere = {"host": "another-pod", "pid": os.getpid(), "pid_started": 0.0}
    assert why_dead(view(timedelta(minutes=10), elsewhere), NOW, 1800, HOST) is None


def test_silence_beyond_the_limit_is_death_wherever_the_run_was():
    elsewhere = {"host": "another-pod", "pid": 1, "pid_started": 0.0}
    why = why_dead(view(timedelta(minutes=31), elsewhere), NOW, 1800, HOST)
    assert "no step heartbeat, start or end for 1860 s" in why
    # no heartbeat at all: the run's creation counts (2 hours ago)
    assert why_dead(view(None, {}), NOW, 1800, HOST) is not None
