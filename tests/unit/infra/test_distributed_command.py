"""What each pod of a multi-pod training step starts: torchrun as one node of the job."""

from __future__ import annotations

import pytest

from models.runtime.distributed import DistributedConfig, DistributedError
from steps.training.distributed_command import node_command, pod_step

POD_ENV = {
    "ZENML_KUBERNETES_POD_COUNT": "2",
    "ZENML_KUBERNETES_MAIN_ADDRESS": "job-0.job.hiergan.svc",
    "ZENML_KUBERNETES_MAIN_PORT": "29500",
    "JOB_COMPLETION_INDEX": "1",
}


def test_each_pod_is_one_torchrun_node_meeting_pod_zero():
    config = DistributedConfig(world_size=4, nodes=2, launcher="kubernetes")
    cmd = node_command("/tmp/job/job.json", config, POD_ENV)
    args = dict(zip(cmd[1:], cmd[2:], strict=False))
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert args["--nnodes"] == "2" and args["--node-rank"] == "1"
    assert args["--master-addr"] == "job-0.job.hiergan.svc" and args["--master-port"] == "29500"
    assert args["--nproc-per-node"] == "2"  # 4 ranks on 2 pods
    assert args["--max-restarts"] == "0"  # a failed rank fails the job
    assert cmd[-3:] == ["-m", "models.jobs.worker", "/tmp/job/job.json"]


def test_a_pod_outside_a_multi_pod_step_or_of_another_size_fails_clearly():
    config = DistributedConfig(world_size=2, nodes=2, launcher="kubernetes")
    with pytest.raises(DistributedError, match="not a pod of a multi-pod step"):
        node_command("job.json", config, {})
    with pytest.raises(DistributedError, match="runs on 3 pods but distributed.nodes is 2"):
        node_command("job.json", config, POD_ENV | {"ZENML_KUBERNETES_POD_COUNT": "3"})


def test_the_command_steps():
    step = pod_step("gan")
    assert step.name == "pretrain_gan_pods"
    assert step.configuration.command == [
        "python", "-m", "steps.training.distributed_command", "gan",
    ]  # fmt: skip
