"""infra/k8s and train_k8s.yaml: schema-valid, complete, and saying what the cluster needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO

K8S_DIR = REPO / "infra" / "k8s"
K8S_VERSION = kubernetes_validate.latest_version()


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _resources() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    return {
        (doc["kind"], doc["metadata"]["name"]): doc
        for name in kustomization["resources"]
        for doc in _documents(K8S_DIR / name)
    }


@pytest.mark.parametrize(
    "path",
    sorted(p for p in K8S_DIR.rglob("*.yaml") if p.name != "kustomization.yaml"),
    ids=lambda p: str(p.relative_to(K8S_DIR)),
)
def test_every_manifest_is_valid_against_the_kubernetes_schema(path: Path) -> None:
    docs = _documents(path)
    assert docs, f"{path.name} holds no object"
    for doc in docs:
        # strict: an unknown or misplaced field fails, as `kubectl apply --validate=strict` does
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_check_rejects_a_misplaced_field() -> None:
    deployment = _resources()[("Deployment", "hiergan-service")]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_only_those() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    present = sorted(p.name for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present
    assert len(set(listed)) == len(listed)
    images = {i["name"] for i in kustomization["images"]}
    used = {
        c["image"]
        for doc in _resources().values()
        if doc["kind"] == "Deployment"
        for c in doc["spec"]["template"]["spec"]["containers"]
    }
    assert used <= images, "every image is set in one place: the kustomization's images"


def test_model_service_probes_resources_and_autoscaling() -> None:
    resources = _resources()
    deployment = resources[("Deployment", "hiergan-service")]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    port = container["ports"][0]
    assert port["containerPort"] == 3000
    # BentoML 1.4's health endpoints
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["port"] == port["name"]
    # inside the container the service must listen beyond loopback
    assert container["args"][:3] == ["serve", "--host", "0.0.0.0"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])

    service = resources[("Service", "hiergan-service")]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    hpa = resources[("HorizontalPodAutoscaler", "hiergan-service")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "hiergan-service",
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    pdb = resources[("PodDisruptionBudget", "hiergan-service")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


def test_mlflow_server_reads_credentials_from_secrets_only() -> None:
    resources = _resources()
    deployment = resources[("Deployment", "mlflow")]
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert not any(kind == "Secret" for kind, _ in resources), "no Secret in the manifests"
    secret_vars = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in container["env"]
        if "valueFrom" in e
    }
    assert secret_vars == {
        "MLFLOW_AUTH_ADMIN_USERNAME": "hiergan-mlflow",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "hiergan-mlflow",
        "AWS_ACCESS_KEY_ID": "hiergan-s3",
        "AWS_SECRET_ACCESS_KEY": "hiergan-s3",
    }
    plain = {e["name"] for e in container["env"] if "value" in e}
    assert not plain & {"AWS_SECRET_ACCESS_KEY", "MLFLOW_AUTH_ADMIN_PASSWORD"}
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in spec["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims <= {name for kind, name in resources if kind == "PersistentVolumeClaim"}
    assert deployment["spec"]["strategy"]["type"] == "Recreate"  # one SQLite writer
    assert ("Service", "mlflow") in resources


def test_train_k8s_config_is_valid_for_the_pipeline_and_for_zenml() -> None:
    from zenml.config import DockerSettings
    from zenml.integrations.kubernetes.flavors.kubernetes_orchestrator_flavor import (
        KubernetesOrchestratorSettings,
    )

    from pipelines.run_config import load_run_config
    from pipelines.train_pipeline import TrainParams

    params, options = load_run_config(REPO / "pipelines/configs/train_k8s.yaml", TrainParams)
    assert params.gan.device == "cuda" and params.dataset.data_dir == "/data"
    pipeline_k8s = KubernetesOrchestratorSettings.model_validate(
        options["settings"]["orchestrator.kubernetes"]
    )
    assert pipeline_k8s.synchronous is False
    assert DockerSettings.model_validate(options["settings"]["docker"]).skip_build
    service_accounts = {n for k, n in _resources() if k == "ServiceAccount"}
    assert pipeline_k8s.service_account_name in service_accounts
    claims = {n for k, n in _resources() if k == "PersistentVolumeClaim"}
    assert pipeline_k8s.orchestrator_pod_settings.labels == {"hiergan.io/role": "pipeline"}
    for name, step in options["steps"].items():
        if name.endswith("_pods"):  # the multi-pod steps: test_multi_pod_training_steps
            continue
        k8s = KubernetesOrchestratorSettings.model_validate(
            step["settings"]["orchestrator.kubernetes"]
        )
        pod = k8s.pod_settings
        assert pod is not None and {"cpu", "memory"} <= set(pod.resources["requests"]), name
        for volume in pod.volumes:
            assert volume["persistentVolumeClaim"]["claimName"] in claims, name
        gpu = pod.resources["limits"].get("nvidia.com/gpu")
        assert pod.labels == {"hiergan.io/role": "pipeline"}, name  # the NetworkPolicies' label
        if name in ("pretrain_gan", "fit_hierarchical_classifier"):
            assert gpu == "1" and pod.node_selectors and pod.tolerations, name
            docker = DockerSettings.model_validate(step["settings"]["docker"])
            assert docker.skip_build and docker.parent_image.endswith("-cuda:0.1.0")
        else:
            assert gpu is None, name


def test_multi_pod_training_steps_match_the_distributed_config() -> None:
    from zenml.integrations.kubernetes.flavors.kubernetes_step_operator_flavor import (
        KubernetesStepOperatorSettings,
    )

    from pipelines.run_config import load_run_config
    from pipelines.train_pipeline import TrainParams

    params, options = load_run_config(REPO / "pipelines/configs/train_k8s.yaml", TrainParams)
    dist = params.distributed
    assert dist.launcher == "kubernetes" and dist.world_size == dist.nodes == 2
    assert dist.job_root.startswith(params.gan.checkpoint_root)  # both on the shared volume
    assert params.gan.batch_size % dist.world_size == 0
    claims = {n for k, n in _resources() if k == "PersistentVolumeClaim"}
    for name in ("pretrain_gan_pods", "fit_classifier_pods"):
        step = options["steps"][name]
        assert step["step_operator"] is True, name
        settings = KubernetesStepOperatorSettings.model_validate(
            step["settings"]["step_operator.kubernetes"]
        )
        assert settings.pod_count == dist.nodes, name
        assert settings.service_account_name == "hiergan-pipelines"
        pod = settings.pod_settings
        assert pod.labels == {"hiergan.io/role": "pipeline"}
        # one GPU per pod: one rank per pod
        assert pod.resources["limits"]["nvidia.com/gpu"] == str(dist.procs_per_node) == "1"
        mounts = {m["name"]: m["mountPath"] for m in pod.volume_mounts}
        assert mounts["checkpoints"] == "/checkpoints" and mounts["shm"] == "/dev/shm"
        assert {
            v["persistentVolumeClaim"]["claimName"]
            for v in pod.volumes
            if "persistentVolumeClaim" in v
        } <= claims
    checkpoints = _resources()[("PersistentVolumeClaim", "hiergan-checkpoints")]
    assert checkpoints["spec"]["accessModes"] == ["ReadWriteMany"]  # pods on several nodes


def test_network_policies_let_no_one_in_where_they_do_not_belong() -> None:
    resources = _resources()
    policies = {n: d["spec"] for (k, n), d in resources.items() if k == "NetworkPolicy"}
    deny = policies["default-deny-ingress"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny  # no rule: nothing comes in unless another policy says so
    by_target = {
        tuple(sorted(p["podSelector"].get("matchLabels", {}).items())): p
        for n, p in policies.items()
        if n != "default-deny-ingress"
    }
    mlflow = by_target[(("app.kubernetes.io/name", "mlflow"),)]
    (rule,) = mlflow["ingress"]
    assert [f["podSelector"]["matchLabels"] for f in rule["from"]] == [
        {"hiergan.io/role": "pipeline"},
        {"app.kubernetes.io/name": "hiergan-service"},
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5000}]
    service = by_target[(("app.kubernetes.io/name", "hiergan-service"),)]
    (rule,) = service["ingress"]
    container_port = resources[("Deployment", "hiergan-service")]["spec"]["template"]["spec"][
        "containers"
    ][0]["ports"][0]["containerPort"]
    assert rule["ports"] == [{"protocol": "TCP", "port": container_port}]  # its Service's port
    pipelines = by_target[(("hiergan.io/role", "pipeline"),)]
    assert pipelines["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {"hiergan.io/role": "pipeline"}}}]}
    ]
    # the labels the policies select on are on the pods they mean
    for name in ("mlflow", "hiergan-service"):
        labels = resources[("Deployment", name)]["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == name
    zenml = _documents(K8S_DIR / "zenml-server" / "network-policy.yaml")[0]["spec"]
    sources = zenml["ingress"][0]["from"]
    assert sources[0]["podSelector"]["matchLabels"] == {"hiergan.io/role": "pipeline"}
    assert sources[0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "hiergan"
    }


def test_pipelines_service_account_has_a_namespaced_least_privilege_role() -> None:
    resources = _resources()
    assert not any(k in ("ClusterRole", "ClusterRoleBinding") for k, _ in resources)
    binding = resources[("RoleBinding", "hiergan-pipelines")]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "hiergan-pipelines",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "hiergan-pipelines", "namespace": "hiergan"}
    ]
    role = resources[("Role", "hiergan-pipelines")]
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert not any("*" in item for item in granted)
    # no reading of other Secrets' values by listing, no RBAC, no exec into pods
    assert ("", "secrets", "list") not in granted and ("", "secrets", "watch") not in granted
    assert not any(g == "rbac.authorization.k8s.io" or r == "pods/exec" for g, r, _ in granted)


def test_mlflow_asks_for_a_password() -> None:
    resources = _resources()
    (container,) = resources[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"]
    assert "--app-name=basic-auth" in container["args"]
    ini = resources[("ConfigMap", "mlflow-auth")]["data"]["basic_auth.ini"]
    assert "default_permission = READ" in ini  # a user without a grant can only read
    assert "admin_password" not in ini and "admin_username" not in ini
