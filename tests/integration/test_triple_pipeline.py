"""The train pipeline with gan.mode triple, and a Triple-GAN game killed mid-run that resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import REPO
from tests.integration.pipeline_runs import inspect_train_run
from tests.integration.test_train_pipeline import _env, _run

pytestmark = pytest.mark.integration

INSPECT = r"""
import json
from zenml.client import Client
run = Client().get_pipeline("train_pipeline").last_run
def out(step, name):
    return run.steps[step].outputs[name][0]
report = out("evaluate_classifier", "evaluation_report")
print(json.dumps({
    "status": run.status.value,
    "steps": {name: s.status.value for name, s in run.steps.items()},
    "samples_viz": [
        v.type.value for v in out("play_triple_game", "conditional_samples").visualizations
    ],
    "gan_info": out("play_triple_game", "gan").load().info,
    "classifier_info": out("calibrate_classifier", "calibrated_classifier").load().info,
    "report_has_grids": "What the generator draws for each item" in report.load(),
    "report_has_fidelity": "Conditional fidelity of G" in report.load(),
    "registered": out("register_model", "registered_model").load(),
}))
"""


def test_triple_profile_trains_evaluates_and_registers_the_game_classifier(
    tmp_path: Path, real_fashion_mnist_dir: Path
) -> None:
    config = yaml.safe_load((REPO / "pipelines/configs/train_triple_smoke.yaml").read_text())
    config["parameters"]["gan"]["checkpoint_root"] = str(tmp_path / "checkpoints")
    config["parameters"]["trunk_gan"]["checkpoint_root"] = str(tmp_path / "checkpoints")
    path = tmp_path / "triple.yaml"
    path.write_text(yaml.safe_dump(config))
    env = _env(tmp_path)
    proc = _run(["-m", "pipelines.train_pipeline", "--config", str(path)], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    facts = inspect_train_run(env, tmp_path, INSPECT)
    assert facts["status"] == "completed"
    steps = facts["steps"]
    # classifier.init: gan -> trunk_gan is pretrained first and C starts from its D
    assert "play_triple_game" in steps and "pretrain_trunk_gan" in steps
    assert "fit_hierarchical_classifier" not in steps
    assert set(steps.values()) == {"completed"}
    assert "image" in facts["samples_viz"]
    gan = facts["gan_info"]
    assert gan["mode"] == "triple" and gan["steps"] == 20 and gan["labelled_images"] >= 10
    assert "reference classifier" in gan["fidelity_judged_by"]
    assert 0.0 <= gan["fidelity_fine"] <= 1.0
    assert facts["classifier_info"]["init"] == "triple"
    assert facts["classifier_info"]["trunk"] == "gan" and gan["trunk"] == "gan"
    assert facts["report_has_grids"] and facts["report_has_fidelity"]
    assert facts["registered"]


GAME_SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[1])
from tests.unit.gan.test_triple_game import make_game
from pathlib import Path
make_game(Path(sys.argv[2]), steps=int(sys.argv[3])).fit()
"""


def test_a_game_killed_by_sigkill_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    from tests.unit.gan.test_triple_game import _snapshot, make_game

    steps = 400  # make_game checkpoints every 4 steps
    script = tmp_path / "game.py"
    script.write_text(GAME_SCRIPT)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(REPO), str(tmp_path / "killed"), str(steps)], env=env
    )
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "killed").glob("*/checkpoint.pt")):
            assert proc.poll() is None, "the game ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    resumed = make_game(tmp_path / "killed", steps=steps)
    result = resumed.fit()
    assert 0 < result.resumed_from < steps and result.steps == steps
    straight = make_game(tmp_path / "straight", steps=steps)
    straight.fit()
    a, b = _snapshot(straight), _snapshot(resumed)
    for key in a:
        assert torch.equal(a[key], b[key]), key
