"""The Kubernetes stack end to end, short of a cluster: what the pipeline and the schedule submit.

A real ZenML server runs on 127.0.0.1 (the Kubernetes orchestrator refuses a local SQLite store),
the S3 artifact store is a loopback moto server, and the Kubernetes API is the loopback stand-in
of tests/k8s_stand_in.py. The stack is registered by infra/stacks/kubernetes.sh itself; the
pipeline is submitted through its CLI with train_k8s.yaml (the smoke config's parameters); the
orchestrator pod's own command then runs here, as the kubelet would run it, and submits one Job
per step; ``--schedule`` submits a CronJob. Every captured object is validated with
kubernetes-validate (strict) against the newest Kubernetes schema it ships.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import kubernetes_validate
import pytest
import yaml
from moto.server import ThreadedMotoServer
from packaging.version import Version
from zenml.integrations.kubernetes.constants import (
    STEP_NAME_ANNOTATION_KEY,
    STEP_OPERATOR_ANNOTATION_KEY,
)

from tests.conftest import REPO
from tests.k8s_stand_in import KubeStandIn, Submission
from tests.servers import free_port
from tests.zenml_server import local_zenml_server

pytestmark = pytest.mark.integration

NAMESPACE = "hiergan"
CONTEXT = "hiergan-stand-in"
BUCKET = "hiergan-artifacts"
# Fake credentials with a recognisable shape: they must never appear in a submitted object.
S3_KEY_ID = "HIERGANTESTKEYID0001"
S3_SECRET = "hiergan-test-secret-0001"
MLFLOW_PASSWORD = "hiergan-test-mlflow-0001"
CRON = "0 3 * * 0"
GPU = "nvidia.com/gpu"
K8S_VERSION = kubernetes_validate.latest_version()
TRAIN_STEPS = {
    "guard_training_run",
    "ingest_dataset",
    "validate_dataset",
    "enforce_data_validation",
    "pretrain_gan",
    "fit_hierarchical_classifier",
    "calibrate_classifier",
    "evaluate_classifier",
}
POD_STEPS = ("pretrain_gan_pods", "fit_classifier_pods")
# Verbs the Role grants that a run that goes well does not use: the clean-up of a failed or
# stopped run (delete a step's Job and its token Secret, a multi-pod step's Service) and reading
# a failed pod's log for the error message.
CLEANUP_ONLY = {
    ("batch", "jobs", "delete"),
    ("", "secrets", "delete"),
    ("", "services", "delete"),
    ("", "pods/log", "get"),
}
# Verbs the Role grants for the multi-pod steps' step operator (a step's token Secret, the
# indexed Job's headless Service, watching its pods and Job): their pods are not run here.
STEP_OPERATOR_ONLY = {
    ("", "secrets", "create"),
    ("", "secrets", "get"),
    ("", "secrets", "patch"),
    ("", "services", "create"),
    ("", "services", "get"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("batch", "jobs", "list"),
    ("batch", "jobs", "watch"),
}


def _run(cmd: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _check(proc: subprocess.CompletedProcess, what: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{what} failed:\n{out[-4000:]}"
    return out


def _k8s_smoke_config(tmp_path: Path) -> Path:
    """train_k8s.yaml with the smoke config's parameters; the DAG is polled every 0.5 s."""
    config = yaml.safe_load((REPO / "pipelines/configs/train_k8s.yaml").read_text())
    smoke = yaml.safe_load((REPO / "pipelines/configs/train_smoke.yaml").read_text())
    # the smoke run's sizes, trained data-parallel on the multi-pod steps as train_k8s.yaml says
    config["parameters"] = smoke["parameters"] | {
        "distributed": config["parameters"]["distributed"]
    }
    config["enable_cache"] = False
    config["settings"]["orchestrator.kubernetes"]["job_monitoring_interval"] = 0.5
    path = tmp_path / "train_k8s_smoke.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    spec = obj.get("spec") or {}
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return (spec.get("template") or {}).get("spec")


def _pod_env(container: dict[str, Any], stand_in: KubeStandIn) -> dict[str, str]:
    """The container's environment, with secretKeyRefs read from the stand-in's Secrets."""
    secrets = {s["metadata"]["name"]: s for s in stand_in.objects("Secret")}
    env = {}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = str(var["value"])
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            secret = secrets[ref["name"]]
            if ref["key"] in (secret.get("stringData") or {}):
                env[var["name"]] = secret["stringData"][ref["key"]]
            else:
                env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return env


def _validate(obj: dict[str, Any]) -> str:
    try:
        return f"valid (k8s {kubernetes_validate.validate(obj, K8S_VERSION, strict=True)})"
    except kubernetes_validate.ValidationError as err:
        return f"INVALID at {'.'.join(map(str, err.path))}: {err.message}"
    except kubernetes_validate.SchemaNotFoundError as err:
        return f"NO SCHEMA: {err.message}"


def _summary_row(sub: Submission, stand_in: KubeStandIn) -> dict[str, str]:
    """One captured request: what it submitted, where it asks to run, and its validation."""
    if sub.method == "PATCH":
        # a merge patch is not an object: validate what it leaves behind
        name = sub.path.rsplit("/", 1)[-1]
        obj = next(o for o in stand_in.objects(sub.kind) if o["metadata"]["name"] == name)
        result = _validate(obj) + " (object after patch)"
    else:
        # ZenML leaves kind/apiVersion out of Job and CronJob bodies; the API server takes them
        # from the endpoint, and so does the check.
        obj = dict(sub.body)
        missing = "kind" not in obj or "apiVersion" not in obj
        obj.setdefault("kind", sub.kind)
        obj.setdefault("apiVersion", sub.api_version)
        result = _validate(obj) + (" [kind/apiVersion from endpoint]" if missing else "")
    meta = obj.get("metadata", {})
    main = ((_pod_spec(obj) or {}).get("containers") or [{}])[0]
    resources = main.get("resources") or {}
    step = (meta.get("annotations") or {}).get(STEP_NAME_ANNOTATION_KEY, "")
    return {
        "request": f"{sub.method} {sub.kind}",
        "name": meta.get("name", ""),
        "step": step or ("(orchestrator)" if sub.kind in ("Job", "CronJob") else ""),
        "gpu": (resources.get("limits") or {}).get(GPU, "-"),
        "cpu/mem request": "/".join(
            str((resources.get("requests") or {}).get(k, "-")) for k in ("cpu", "memory")
        ),
        "image": main.get("image", "").rsplit("/", 1)[-1],
        "validation": result,
    }


@pytest.fixture
def s3_endpoint() -> str:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=S3_KEY_ID,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


def test_pipeline_and_schedule_submit_valid_objects(tmp_path: Path, s3_endpoint: str) -> None:
    assert Version(K8S_VERSION) >= Version("1.33"), K8S_VERSION
    with KubeStandIn() as stand_in, local_zenml_server(tmp_path / "server") as server:
        kubeconfig = stand_in.write_kubeconfig(tmp_path / "kubeconfig", context=CONTEXT)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "AWS_"))}
        env = base | server.client_env(tmp_path / "client") | {"KUBECONFIG": str(kubeconfig)}

        # 1. The stack, registered by the script the README gives.
        script_env = env | {
            "ZENML": str(Path(sys.executable).with_name("zenml")),
            "HIERGAN_KUBE_CONTEXT": CONTEXT,
            "HIERGAN_REGISTRY": "registry.example.internal/hiergan",
            "HIERGAN_S3_BUCKET": f"s3://{BUCKET}",
            "HIERGAN_S3_ENDPOINT": s3_endpoint,
            "AWS_ACCESS_KEY_ID": S3_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "MLFLOW_TRACKING_USERNAME": "hiergan",
            "MLFLOW_TRACKING_PASSWORD": MLFLOW_PASSWORD,
        }
        _check(_run(["bash", "infra/stacks/kubernetes.sh"], script_env), "kubernetes.sh")

        # 2. One run: the client submits the orchestrator Job (and its token Secret).
        config = _k8s_smoke_config(tmp_path)
        train = [sys.executable, "-m", "pipelines.train_pipeline", "--config", str(config)]
        out = _check(_run(train, env), "train_pipeline on hiergan-k8s")
        assert "hiergan-k8s" in out
        assert "Code upload finished" in out  # the project code went to the S3 artifact store
        jobs = [s for s in stand_in.submissions if s.method == "POST" and s.kind == "Job"]
        assert len(jobs) == 1, [s.path for s in stand_in.submissions]
        orchestrator_job = jobs[0].body["metadata"]["name"]

        # 3. The orchestrator pod, run here as the kubelet would run it: it submits the step Jobs.
        pod_dir = tmp_path / "pod"
        pod_dir.mkdir()
        container = stand_in.run_job_pod(NAMESPACE, orchestrator_job, socket.gethostname())
        pod_env = (
            {k: base[k] for k in ("PATH", "HOME", "LANG") if k in base}
            | _pod_env(container, stand_in)
            | {"ZENML_CONFIG_PATH": str(pod_dir / "zenml"), "KUBECONFIG": str(kubeconfig)}
            # in-cluster credentials (the step operator's) lead to the stand-in too
            | {"PYTHONPATH": str(REPO / "tests" / "incluster")}
            | {"HIERGAN_STAND_IN_KUBECONFIG": str(kubeconfig)}
        )
        before = len(stand_in.requests)
        assert "ZENML_STORE_PASSWORD" not in pod_env  # the pod has the run's token only
        command = [sys.executable if c == "python" else c for c in container["command"]]
        out = _check(_run(command + container["args"], pod_env, cwd=pod_dir), "orchestrator pod")
        assert "Orchestrator pod finished" in out, out[-3000:]

        # The multi-pod steps' own pods are not run here: a step pod needs its parents' step runs
        # and the stack's MLflow server, which only a whole run in a cluster has. Their step Jobs
        # (a hand-off pod without a GPU) are checked below, their step-operator settings (an
        # indexed Job of GPU pods and a headless Service) in tests/unit/infra.
        used = {(r.group, r.resource, r.verb) for r in stand_in.requests[before:]}

        # 4. The schedule: a CronJob that starts the same orchestrator pod.
        out = _check(_run([*train, "--schedule", CRON], env), "train_pipeline --schedule")
        assert f"scheduled with cron {CRON!r}" in out
        cron_jobs = [s for s in stand_in.submissions if s.kind == "CronJob"]
        assert len(cron_jobs) == 1

        # 5. Validate every captured object and summarise.
        rows = [_summary_row(sub, stand_in) for sub in stand_in.submissions]
        failures = [row for row in rows if not row["validation"].startswith("valid")]

        print(f"\nObjects submitted to the Kubernetes API stand-in (schema {K8S_VERSION}):")
        widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in rows[0]}
        print("  ".join(k.ljust(w) for k, w in widths.items()))
        for row in rows:
            print("  ".join(str(row[k]).ljust(w) for k, w in widths.items()))
        print(
            "The CronJob starts the same orchestrator pod at each slot, which submits the same "
            "step Jobs.\n"
        )
        assert not failures, failures

        # What the objects say: GPU placement, CPU sizing, the schedule, no credentials.
        step_jobs = {_step(j): j for j in _step_jobs(stand_in, operator=False)}
        assert set(POD_STEPS) <= set(step_jobs), sorted(step_jobs)
        # the pipeline grows: these steps at least, each in its own Job
        assert TRAIN_STEPS <= set(step_jobs), sorted(step_jobs)
        for name, job in step_jobs.items():
            pod = _pod_spec(job)
            res = pod["containers"][0]["resources"]
            assert pod["serviceAccountName"] == "hiergan-pipelines"
            assert job["spec"]["template"]["metadata"]["labels"]["hiergan.io/role"] == "pipeline"
            if name in POD_STEPS:  # this pod only hands the command to the step operator
                assert GPU not in res.get("limits", {}), name
            elif name in ("pretrain_gan", "fit_hierarchical_classifier"):
                assert res["limits"][GPU] == res["requests"][GPU] == "1", name
                assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
                assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in pod[
                    "tolerations"
                ]
                assert pod["containers"][0]["image"].endswith("/hiergan-step-cuda:0.1.0")
            else:
                assert GPU not in res.get("limits", {}), name
                assert {"cpu", "memory"} <= set(res["requests"]) and res["limits"]["memory"]
                assert pod["containers"][0]["image"].endswith("/hiergan-step:0.1.0")
        assert any(v["name"] == "data" for v in _pod_spec(step_jobs["ingest_dataset"])["volumes"])
        cron = stand_in.objects("CronJob")[0]["spec"]
        assert cron["schedule"] == CRON and cron["concurrencyPolicy"] == "Forbid"
        _check_role(used)
        captured = json.dumps([s.body for s in stand_in.submissions])
        for secret in (S3_KEY_ID, S3_SECRET, MLFLOW_PASSWORD, server.password):
            assert secret not in captured


def _step(job: dict[str, Any]) -> str:
    return (job["metadata"].get("annotations") or {}).get(STEP_NAME_ANNOTATION_KEY, "")


def _step_jobs(stand_in: KubeStandIn, operator: bool) -> list[dict[str, Any]]:
    """The step Jobs of the orchestrator, or those of the step operator (``operator=True``)."""
    return [
        j
        for j in stand_in.objects("Job")
        if _step(j)
        and (STEP_OPERATOR_ANNOTATION_KEY in (j["metadata"].get("annotations") or {})) == operator
    ]


def _check_role(used: set[tuple[str, str, str]]) -> None:
    """Every request the orchestrator pod made is allowed; nothing is granted without a reason."""
    docs = yaml.safe_load_all((REPO / "infra/k8s/pipelines-rbac.yaml").read_text())
    role = next(d for d in docs if d and d["kind"] == "Role")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    print("API requests of the orchestrator pod:", sorted(used))
    assert used <= granted, f"requests the Role does not allow: {sorted(used - granted)}"
    unused = granted - used
    assert unused <= CLEANUP_ONLY | STEP_OPERATOR_ONLY, f"granted but unused: {sorted(unused)}"
