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
set -euo pipefail
ZENML=${ZENML:-zenml}
export ZENML_ANALYTICS_OPT_IN=${ZENML_ANALYTICS_OPT_IN:-false}

: "${HIERGAN_KUBE_CONTEXT:?set HIERGAN_KUBE_CONTEXT to the kubeconfig context of the cluster}"
: "${HIERGAN_REGISTRY:?set HIERGAN_REGISTRY, e.g. registry.example.internal/hiergan}"
: "${HIERGAN_S3_BUCKET:?set HIERGAN_S3_BUCKET, e.g. s3://hiergan-artifacts}"
S3_ENDPOINT=${HIERGAN_S3_ENDPOINT:-}
S3_REGION=${HIERGAN_S3_REGION:-us-east-1}
MLFLOW_URI=${HIERGAN_MLFLOW_URI:-http://mlflow.hiergan.svc.cluster.local:5000}
NAMESPACE=${HIERGAN_NAMESPACE:-hiergan}
STACK=hiergan-k8s

if $ZENML stack describe "$STACK" >/dev/null 2>&1; then
    echo "Stack $STACK exists; activating it (change a component with \`zenml <type> update\`)."
    $ZENML stack set "$STACK"
    exit 0
fi

# 1. The S3 and MLflow credentials, as ZenML secrets.
if ! $ZENML secret get hiergan-s3 >/dev/null 2>&1; then
    : "${AWS_ACCESS_KEY_ID:?set AWS_ACCESS_KEY_ID (read into the ZenML secret hiergan-s3)}"
    : "${AWS_SECRET_ACCESS_KEY:?set AWS_SECRET_ACCESS_KEY (read into the ZenML secret hiergan-s3)}"
    $ZENML secret create hiergan-s3 \
        --aws_access_key_id="$AWS_ACCESS_KEY_ID" \
        --aws_secret_access_key="$AWS_SECRET_ACCESS_KEY"
fi

if ! $ZENML secret get hiergan-mlflow >/dev/null 2>&1; then
    : "${MLFLOW_TRACKING_USERNAME:?set MLFLOW_TRACKING_USERNAME (read into the ZenML secret hiergan-mlflow)}"
    : "${MLFLOW_TRACKING_PASSWORD:?set MLFLOW_TRACKING_PASSWORD (read into the ZenML secret hiergan-mlflow)}"
    $ZENML secret create hiergan-mlflow \
        --username="$MLFLOW_TRACKING_USERNAME" \
        --password="$MLFLOW_TRACKING_PASSWORD"
fi

# 2. The artifact store. `--` ends the CLI's own options: the s3 flavor's `secret` field would
#    otherwise be taken for the CLI's `--secret` option.
client_kwargs="{\"region_name\": \"$S3_REGION\"}"
if [ -n "$S3_ENDPOINT" ]; then
    client_kwargs="{\"endpoint_url\": \"$S3_ENDPOINT\", \"region_name\": \"$S3_REGION\"}"
fi
$ZENML artifact-store register hiergan-s3 --flavor=s3 -- \
    --path="$HIERGAN_S3_BUCKET" \
    --key='{{hiergan-s3.aws_access_key_id}}' \
    --secret='{{hiergan-s3.aws_secret_access_key}}' \
    --client_kwargs="$client_kwargs"

# 3. The orchestrator. The ZenML API token reaches the pods as a Kubernetes Secret, not as a
#    plain environment variable in the Job spec.
$ZENML orchestrator register hiergan-k8s --flavor=kubernetes \
    --kubernetes_context="$HIERGAN_KUBE_CONTEXT" \
    --kubernetes_namespace="$NAMESPACE" \
    --pass_zenml_token_as_secret=true

# 3b. The step operator of the multi-pod (DDP) training steps; it runs in the orchestrator pod.
$ZENML step-operator register hiergan-k8s-pods --flavor=kubernetes \
    --kubernetes_namespace="$NAMESPACE" \
    --incluster=true

# 4. Container registry and image builder.
$ZENML container-registry register hiergan-registry --flavor=default --uri="$HIERGAN_REGISTRY"
$ZENML image-builder register hiergan-image-builder --flavor=local

# 5. MLflow: tracking server (basic auth) and model registry (infra/k8s/mlflow-*.yaml).
$ZENML experiment-tracker register hiergan-mlflow-k8s --flavor=mlflow \
    --tracking_uri="$MLFLOW_URI" \
    --tracking_username='{{hiergan-mlflow.username}}' \
    --tracking_password='{{hiergan-mlflow.password}}'
$ZENML model-registry register hiergan-mlflow-k8s-registry --flavor=mlflow

# 6. The stack.
$ZENML stack register "$STACK" \
    -o hiergan-k8s -s hiergan-k8s-pods -a hiergan-s3 -c hiergan-registry -i hiergan-image-builder \
    -e hiergan-mlflow-k8s -r hiergan-mlflow-k8s-registry
$ZENML stack set "$STACK"
