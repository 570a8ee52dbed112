#!/usr/bin/env bash
# The local stack `hiergan-local`: what `pipelines/stack.py` creates on the first run, as commands.
# Default orchestrator and artifact store (this machine, ZenML's SQLite store), an MLflow
# experiment tracker and model registry with no tracking URI (ZenML keeps the MLflow store inside
# the local artifact store). Nothing here needs credentials.
#
#   bash infra/stacks/local.sh        # idempotent: does nothing when the stack exists
set -euo pipefail
ZENML=${ZENML:-zenml}
export ZENML_ANALYTICS_OPT_IN=${ZENML_ANALYTICS_OPT_IN:-false}

if $ZENML stack describe hiergan-local >/dev/null 2>&1; then
    echo "Stack hiergan-local exists; activating it."
else
    $ZENML experiment-tracker register hiergan-mlflow --flavor=mlflow
    $ZENML model-registry register hiergan-mlflow-registry --flavor=mlflow
    $ZENML stack register hiergan-local \
        -o default -a default -e hiergan-mlflow -r hiergan-mlflow-registry
fi
$ZENML stack set hiergan-local
