"""The Kubernetes stack's components as registry/kubernetes_stack.py registers them."""

from __future__ import annotations

import pytest

from registry.kubernetes_stack import StackSetupError, components, main

ENV = {
    "HIERGAN_KUBE_CONTEXT": "prod",
    "HIERGAN_REGISTRY": "registry.example.internal/hiergan",
    "HIERGAN_S3_BUCKET": "s3://hiergan-artifacts",
    "HIERGAN_S3_ENDPOINT": "http://minio:9000",
    "AWS_SECRET_ACCESS_KEY": "never-in-a-component",
}


def test_components_refer_to_secrets_and_never_hold_a_credential() -> None:
    plan = {name: (kind, flavor, conf) for kind, name, flavor, conf in components(ENV)}
    kinds = {kind for kind, _, _ in plan.values()}
    assert kinds == {
        "artifact_store", "orchestrator", "step_operator", "container_registry",
        "image_builder", "experiment_tracker", "model_registry",
    }  # fmt: skip
    store = plan["hiergan-s3"][2]
    assert store["secret"] == "{{hiergan-s3.aws_secret_access_key}}"
    assert store["client_kwargs"] == {
        "endpoint_url": "http://minio:9000",
        "region_name": "us-east-1",
    }
    orchestrator = plan["hiergan-k8s"][2]
    assert orchestrator["kubernetes_context"] == "prod"
    assert orchestrator["pass_zenml_token_as_secret"] is True
    assert plan["hiergan-k8s-pods"][2] == {"kubernetes_namespace": "hiergan", "incluster": True}
    assert plan["hiergan-mlflow-k8s"][2]["tracking_password"] == "{{hiergan-mlflow.password}}"
    assert "never-in-a-component" not in repr(plan)


def test_a_missing_variable_is_named_before_anything_is_registered(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(StackSetupError, match="HIERGAN_S3_BUCKET"):
        components({k: v for k, v in ENV.items() if k != "HIERGAN_S3_BUCKET"})
    for name in ("HIERGAN_KUBE_CONTEXT", "HIERGAN_REGISTRY", "HIERGAN_S3_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("registry.kubernetes_stack.register", lambda env: components(env))
    assert main() == 2
    assert "set HIERGAN_KUBE_CONTEXT" in capsys.readouterr().err
