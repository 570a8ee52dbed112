#!/usr/bin/env bash
# The Kubernetes stack `hiergan-k8s` (infra/README.md walks through what each piece needs).
#
#   orchestrator        hiergan-k8s            kubernetes: one orchestrator Job per run (a CronJob
#                                              per schedule) starts one Job per step
#   step operator       hiergan-k8s-pods       kubernetes: the multi-pod training steps (indexed
#                                              Job + headless Service), started from inside the
#                                              orchestrator pod (in-cluster credentials)
#   artifact store      hiergan-s3             s3: any S3-compatible store (MinIO, S3, Ceph ...)
#   container registry  hiergan-registry       default flavor: the registry the cluster pulls from
#   image builder       hiergan-image-builder  local: only used if a config asks for a build; the
#                                              train configs use prebuilt images (skip_build)
#   experiment tracker  hiergan-mlflow-k8s     mlflow: the in-cluster tracking server
#   model registry      hiergan-mlflow-k8s-registry  mlflow: the same server's registry
#
# Credentials go into ZenML secrets (stored by the ZenML server) and the components refer to them
# as {{secret.key}}; no credential is written to a file. Run it logged in to the ZenML server
# (`zenml login https://...`) with these variables set:
#
#   HIERGAN_KUBE_CONTEXT   kubeconfig context of the cluster        (required)
#   HIERGAN_REGISTRY       image registry/repository, e.g. registry.example.internal/hiergan
#                                                                   (required)
#   HIERGAN_S3_BUCKET      artifact store path, e.g. s3://hiergan-artifacts   (required)
#   HIERGAN_S3_ENDPOINT    S3 endpoint URL reachable from here and from the pods; empty for AWS S3
#   HIERGAN_S3_REGION      default us-east-1
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   read once into the ZenML secret `hiergan-s3`
#                          (only when that secret does not exist yet)
#   MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD   the MLflow server's user (basic auth),
#                          read once into the ZenML secret `hiergan-mlflow`
#   HIERGAN_MLFLOW_URI     default http://mlflow.hiergan.svc.cluster.local:5000 (infra/k8s)
#   HIERGAN_NAMESPACE      default hiergan
#
#   bash infra/stacks/kubernetes.sh   # registers what is missing, then activates the stack
#
# The registration itself is registry/kubernetes_stack.py: one process through the ZenML client
# (a ZenML CLI start-up per component took ~40 s on 2 cores). It runs with the Python of the
# environment that holds `$ZENML` (or `$PYTHON` when set).
set -euo pipefail
ZENML=${ZENML:-zenml}
export ZENML_ANALYTICS_OPT_IN=${ZENML_ANALYTICS_OPT_IN:-false}

: "${HIERGAN_KUBE_CONTEXT:?set HIERGAN_KUBE_CONTEXT to the kubeconfig context of the cluster}"
: "${HIERGAN_REGISTRY:?set HIERGAN_REGISTRY, e.g. registry.example.internal/hiergan}"
: "${HIERGAN_S3_BUCKET:?set HIERGAN_S3_BUCKET, e.g. s3://hiergan-artifacts}"

if [ -z "${PYTHON:-}" ]; then
    zenml_bin=$(command -v "$ZENML" || true)
    if [ -n "$zenml_bin" ] && [ -x "$(dirname "$zenml_bin")/python" ]; then
        PYTHON="$(dirname "$zenml_bin")/python"
    else
        PYTHON=python3
    fi
fi
cd "$(dirname "$0")/../.."
exec "$PYTHON" -m registry.kubernetes_stack
