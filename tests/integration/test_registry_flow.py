"""Two train runs, promotions, a rollback and the champion's bento served — all through the CLIs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import REPO
from tests.integration.pipeline_runs import SmokeRun, run_cli, smoke_config
from tests.servers import free_port, wait_until_ready

pytestmark = pytest.mark.integration

REGISTRY = r"""
import json
from mlflow import MlflowClient
from registry.stack import use_stack_tracking_uri
from registry.versions import champion_history
from zenml.client import Client
use_stack_tracking_uri()
client = MlflowClient()
versions = client.search_model_versions("name='hiergan'")
stages = {str(v.number): str(v.stage) for v in Client().list_model_versions("hiergan").items}
print(json.dumps({
    "versions": sorted(int(v.version) for v in versions),
    "aliases": {a: str(v) for a, v in client.get_registered_model("hiergan").aliases.items()},
    "history": champion_history(),
    "tags": {v.version: v.tags for v in versions},
    "zenml_stages": stages,
}))
"""


def _registry(env: dict[str, str], tmp_path: Path) -> dict:
    script = tmp_path / "show_registry.py"  # not registry.py: that would shadow the package
    script.write_text(REGISTRY)
    proc = run_cli([str(script)], {**env, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _promote(
    env: dict[str, str], *extra: str, config: str = "pipelines/configs/promote_smoke.yaml"
) -> subprocess.CompletedProcess:
    return run_cli(["-m", "pipelines.promote_pipeline", "--config", config, *extra], env)


def _any_drop_config(tmp_path: Path) -> str:
    """The smoke gates, with any drop from the champion allowed (another seed may score lower)."""
    config = yaml.safe_load((REPO / "pipelines/configs/promote_smoke.yaml").read_text())
    config["parameters"]["gates"] |= {"max_accuracy_drop": 1.0, "max_robust_drop": 1.0}
    path = tmp_path / "promote_any_drop.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_train_twice_promote_rollback_and_serve_champion(smoke_run: SmokeRun) -> None:
    # the first train run is the session's smoke run (version 1 in its store)
    env, tmp_path = smoke_run.env, smoke_run.tmp
    promoted = _promote(env)
    assert promoted.returncode == 0, promoted.stdout[-2000:] + promoted.stderr[-3000:]
    assert "PROMOTED" in promoted.stdout and "no champion yet" in promoted.stdout

    nothing = _promote(env, "--rollback")
    assert nothing.returncode == 1 and "nothing to roll back to" in nothing.stderr

    # A cached re-run: every step up to the gates is reused, packaging and registration are not
    # (they are never cached); the model is the same, so the registry reuses version 1 as the
    # challenger instead of adding a copy.
    config = str(smoke_config(tmp_path, enable_cache=True))
    second = run_cli(["-m", "pipelines.train_pipeline", "--config", config], env)
    assert second.returncode == 0, second.stderr[-3000:]
    plain = re.sub(r"\x1b\[[0-9;]*m", "", second.stdout + second.stderr)  # ZenML colours names
    assert re.search(r"Using cached version of step `?pretrain_gan`?", plain), plain[-3000:]
    assert "Reused already registered hiergan version 1" in plain, plain[-3000:]

    # Another classifier seed (the GAN still cached): a new model, version 2 — made by the third
    # train run, so the cached re-run above added no version. (Each registry read is a process
    # of its own, ~8 s: the state is read after this run and at the end, not after every CLI.)
    config = str(smoke_config(tmp_path, enable_cache=True, classifier_seed=1))
    third = run_cli(["-m", "pipelines.train_pipeline", "--config", config], env)
    assert third.returncode == 0, third.stderr[-3000:]
    state = _registry(env, tmp_path)
    assert state["versions"] == [1, 2]
    assert state["aliases"] == {"champion": "1", "challenger": "2"}
    tags = state["tags"]["2"]
    for key in ("test_accuracy_fine", "test_ece_fine", "dataset_hash", "git_commit", "bento_tag"):
        assert tags.get(key), key
    assert json.loads(tags["dataset_config"])["source"] == "fashion-mnist"
    assert tags["zenml_model_version_name"] == "3"  # the third train run's ZenML model version
    assert state["zenml_stages"]["1"] == "production"

    again = _promote(env, config=_any_drop_config(tmp_path))
    assert again.returncode == 0 and "PROMOTED" in again.stdout, again.stdout[-2000:]
    back = _promote(env, "--rollback")
    assert back.returncode == 0 and "version 2 -> version 1" in back.stdout, back.stderr[-2000:]
    state = _registry(env, tmp_path)
    assert state["aliases"]["champion"] == "1" and state["zenml_stages"]["1"] == "production"

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "serving.serve_champion", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", server, log)
        info = requests.post(f"http://127.0.0.1:{port}/model_info", timeout=30).json()
        # served from the champion's own bento: the model tag inside it is a BentoML one
        assert info["model"].startswith("bentoml:hiergan:")
        assert info["info"]["dataset_hash"] == state["tags"]["1"]["dataset_hash"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert os.path.isdir(tmp_path / "bentoml" / "bentos" / "hiergan_service")
