"""One training run at a time, and a run killed hard does not hold the slot forever.

Run A holds the slot (a step that sleeps); run B, started meanwhile, stops at its first step,
naming A. A is then killed with SIGKILL: ZenML still says it is running. Run C finds A's process
gone, marks A failed with the reason, and runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.test_train_pipeline import _env

pytestmark = pytest.mark.integration

INSPECT = r"""
import json
from zenml.client import Client
runs = Client().list_pipeline_runs(
    pipeline_name="guarded_pipeline", sort_by="asc:created", hydrate=True
)
print(json.dumps([
    {
        "name": r.name,
        "status": r.status.value,
        "reason": r.get_body().status_reason,
        "marked": r.run_metadata.get("marked_failed"),
        # the step's decision (the run's own "run_guard" entry is its owner: host and pid)
        "guard": r.steps["guard_training_run"].run_metadata.get("run_guard"),
        "steps": {n: s.status.value for n, s in r.steps.items()},
    }
    for r in runs.items
]))
"""


def test_no_second_run_while_one_runs_and_a_killed_run_is_marked_failed(tmp_path: Path) -> None:
    env = _env(tmp_path) | {"PYTHONPATH": str(REPO)}
    script = str(REPO / "tests" / "guarded_pipeline.py")
    marker = tmp_path / "a.started"
    a = subprocess.Popen(
        [sys.executable, script, "600", str(marker)],
        cwd=REPO, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240  # a guard against a broken run A, not a timing check
        while not marker.exists():
            assert a.poll() is None, "run A ended before it held the slot"
            assert time.monotonic() < deadline, "run A never reached its second step"
            time.sleep(0.2)
        b = subprocess.run(
            [sys.executable, script, "0", str(tmp_path / "b")],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert b.returncode != 0
        assert "is still running, so run" in b.stdout + b.stderr
        assert not (tmp_path / "b").exists()  # B never reached its work
    finally:
        os.killpg(a.pid, signal.SIGKILL)  # as an OOM kill or an evicted pod would
        a.wait()

    c = subprocess.run(
        [sys.executable, script, "0", str(tmp_path / "c")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert c.returncode == 0, (c.stdout + c.stderr)[-3000:]
    assert (tmp_path / "c").exists()

    inspect = tmp_path / "inspect_runs.py"
    inspect.write_text(INSPECT)
    out = subprocess.run(
        [sys.executable, str(inspect)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run_a, run_b, run_c = json.loads(out.stdout.strip().splitlines()[-1])
    assert run_a["status"] == "failed"
    assert f"marked failed by run {run_c['name']!r}" in run_a["reason"]
    assert "is gone" in run_a["marked"]["reason"]
    assert run_a["steps"]["hold"] == "failed"  # its step was left 'running' by the kill
    assert run_b["status"] == "failed" and run_b["steps"]["guard_training_run"] == "failed"
    assert run_c["status"] == "completed"
    assert run_c["guard"]["marked_failed"][0]["run"] == run_a["name"]
