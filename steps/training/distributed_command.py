"""Multi-pod DDP training on Kubernetes: the command steps and what each of their pods runs.

With ``distributed.launcher: kubernetes`` (and ``world_size > 1``) the train pipeline puts a
*command step* before ``pretrain_gan`` and before ``fit_hierarchical_classifier``:
:func:`pod_step` (``pretrain_gan_pods``, ``fit_classifier_pods``). ZenML's Kubernetes step
operator runs a command step with ``pod_count > 1`` as an indexed Job plus a headless Service;
every pod runs ``python -m steps.training.distributed_command gan|classifier`` (the code baked
into the step image, ``/app``), which

1. finds its pipeline run: the one unfinished ``train_pipeline`` run (the run guard lets only one
   train at a time) whose snapshot has this step;
2. loads the dataset artifact (for the classifier also the GAN) and the step parameters;
3. writes the job (:class:`~models.jobs.JobSpec`) and runs torchrun, as node
   ``JOB_COMPLETION_INDEX`` of ``ZENML_KUBERNETES_POD_COUNT``, meeting the others at
   ``ZENML_KUBERNETES_MAIN_ADDRESS:ZENML_KUBERNETES_MAIN_PORT`` (pod 0, through the headless
   Service).

Rank 0 leaves its result on the shared checkpoints volume; the regular step that follows reads
it (``models/jobs/run.py``). A pod that fails fails the Job (``backoffLimit: 0``), hence the step.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from zenml.steps.command_step import CommandStep

from models.classifier.config import ClassifierConfig
from models.gan.pretrain import PretrainGanConfig
from models.jobs.run import WORKER, classifier_result_dir, gan_result_dir
from models.jobs.spec import SPEC_FILE, JobSpec, write_data
from models.runtime.distributed import DistributedConfig, DistributedError
from models.runtime.launch import torchrun_command

logger = logging.getLogger(__name__)
POD_STEPS = {"gan": "pretrain_gan_pods", "classifier": "fit_classifier_pods"}
# what the Kubernetes step operator and the indexed Job set in every pod
POD_COUNT, MAIN_ADDRESS, MAIN_PORT = (
    "ZENML_KUBERNETES_POD_COUNT",
    "ZENML_KUBERNETES_MAIN_ADDRESS",
    "ZENML_KUBERNETES_MAIN_PORT",
)
POD_INDEX = "JOB_COMPLETION_INDEX"
HEARTBEAT_S = 60


def pod_step(kind: str) -> CommandStep:
    """The command step that trains ``kind`` (``gan`` or ``classifier``) on several pods."""
    return CommandStep(
        command=["python", "-m", "steps.training.distributed_command", kind], name=POD_STEPS[kind]
    )


def node_command(spec_path: str, config: DistributedConfig, env: dict[str, str]) -> list[str]:
    """This pod's torchrun command: ``procs_per_node`` processes, node ``JOB_COMPLETION_INDEX``.

    Raises:
        DistributedError: when the pod lacks the multi-pod variables, or their pod count is not
            the config's ``nodes``.
    """
    missing = [k for k in (POD_COUNT, MAIN_ADDRESS, MAIN_PORT, POD_INDEX) if k not in env]
    if missing:
        raise DistributedError(
            f"not a pod of a multi-pod step (missing {missing}): set pod_count on the step "
            "operator settings of this step"
        )
    if int(env[POD_COUNT]) != config.nodes:
        raise DistributedError(
            f"the step runs on {env[POD_COUNT]} pods but distributed.nodes is {config.nodes}"
        )
    return torchrun_command(
        WORKER,
        [spec_path],
        config.procs_per_node,
        nodes=config.nodes,
        node_rank=env[POD_INDEX],
        master_addr=env[MAIN_ADDRESS],
        master_port=env[MAIN_PORT],
    )


def _this_run() -> Any:
    """The unfinished train_pipeline run that has this step (there is one: the run guard)."""
    from zenml.client import Client
    from zenml.enums import ExecutionStatus

    runs = Client().list_pipeline_runs(
        pipeline_name="train_pipeline", sort_by="desc:created", size=20, hydrate=True
    )
    for run in runs.items:
        if not ExecutionStatus(run.status).is_finished:
            return run
    raise DistributedError("no unfinished train_pipeline run found for this multi-pod step")


def _parameters(run: Any, step: str) -> dict[str, Any]:
    return dict(run.snapshot.step_configurations[step].config.parameters)


def write_job(kind: str, run: Any, job_dir: Path) -> JobSpec:
    """Write the job of ``kind`` for ``run`` into ``job_dir`` (data, GAN, spec)."""
    data = run.steps["ingest_dataset"].outputs["dataset"][0].load()
    step = "pretrain_gan" if kind == "gan" else "fit_hierarchical_classifier"
    params = _parameters(run, step)
    dist = DistributedConfig.model_validate(params["distributed"])
    gan_dir = None
    if kind == "gan":
        config = PretrainGanConfig.model_validate(params["config"])
        result_dir = gan_result_dir(data, config)
    else:
        config = ClassifierConfig.model_validate(params["config"])
        gan = run.steps["pretrain_gan"].outputs["gan"][0].load()
        gan.save(job_dir / "gan")
        gan_dir = str(job_dir / "gan")
        result_dir = classifier_result_dir(data, gan, config, dist)
    spec = JobSpec(
        kind=kind,  # type: ignore[arg-type]
        config=config.model_dump(mode="json"),
        distributed=dist,
        data_dir=str(job_dir / "data"),
        data_storage=write_data(data, job_dir / "data"),
        gan_dir=gan_dir,
        result_dir=str(result_dir),
    )
    (job_dir / SPEC_FILE).write_text(spec.model_dump_json(indent=1))
    return spec


def main(argv: list[str] | None = None) -> None:
    """Write this pod's job, run torchrun, exit with its code.

    Pod 0 sends the step run's heartbeat meanwhile: ZenML's step runner, which sends it for
    regular steps, does not run in a command step's pod, and without it the orchestrator would
    take a long training for a dead one (so would the run guard).
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    kind = (sys.argv[1:] if argv is None else argv)[0]
    if kind not in POD_STEPS:
        raise SystemExit(
            f"usage: python -m steps.training.distributed_command {'|'.join(POD_STEPS)}"
        )
    job_dir = Path(tempfile.mkdtemp(prefix="hiergan-job-"))
    run = _this_run()
    spec = write_job(kind, run, job_dir)
    cmd = node_command(str(job_dir / SPEC_FILE), spec.distributed, dict(os.environ))
    logger.info("pod %s: %s", os.environ.get(POD_INDEX), " ".join(cmd))
    with subprocess.Popen(cmd) as proc:
        while True:
            try:
                code = proc.wait(timeout=HEARTBEAT_S)
                break
            except subprocess.TimeoutExpired:
                if os.environ.get(POD_INDEX) == "0":
                    _heartbeat(run, POD_STEPS[kind])
    sys.exit(code)


def _heartbeat(run: Any, step: str) -> None:
    """Tell the ZenML server that this run's multi-pod step is alive (a failure only warns)."""
    from zenml.client import Client

    try:
        step_run = Client().get_pipeline_run(run.id).steps[step]
        Client().zen_store.update_step_heartbeat(
            step_run_id=step_run.id, heartbeat_liveness_timeout_seconds=5 * HEARTBEAT_S
        )
    except Exception as err:  # noqa: BLE001 - the training must not die of a missed heartbeat
        logger.warning("heartbeat of %s failed: %s", step, err)


if __name__ == "__main__":
    main()
