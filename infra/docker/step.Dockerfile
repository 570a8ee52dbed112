# The image every pipeline step runs in on Kubernetes (and the MLflow server, infra/k8s).
# Two builds of this one file (infra/README.md, step 2):
#   hiergan-step       BASE_IMAGE=python:3.11-slim-bookworm                (CPU steps, MLflow)
#   hiergan-step-cuda  BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04   (pretrain_gan,
#                      fit_hierarchical_classifier on the GPU nodes)
# The environment is requirements.lock, exactly (torch and torchvision are the index's CUDA
# builds: they run on CPU, and on a GPU as they are). The project code is copied too, but ZenML
# also uploads the code of each submission to the artifact store and the pods run that, so only a
# change of requirements.lock needs a new image.
#
#   docker build -f infra/docker/step.Dockerfile -t $REGISTRY/hiergan-step:$TAG .
#   docker build -f infra/docker/step.Dockerfile \
#       --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#       -t $REGISTRY/hiergan-step-cuda:$TAG .
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/opt/uv/bin:$PATH \
    ZENML_ANALYTICS_OPT_IN=false \
    MLFLOW_DISABLE_TELEMETRY=true \
    GE_USAGE_STATS=FALSE \
    BENTOML_DO_NOT_TRACK=true \
    DO_NOT_TRACK=1

# python3 only to bootstrap uv; the environment's Python 3.11 is uv's own build, so the CUDA
# base (Ubuntu's Python 3.12) and the slim base end up with the same interpreter. wordnet-base:
# WordNet 3.0, read offline for the label trees of ImageNet-style folders.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates git \
        wordnet-base \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir uv

WORKDIR /app
COPY requirements.lock pyproject.toml ./
RUN uv venv --python 3.11 /opt/venv \
    && uv pip install --python /opt/venv/bin/python --compile-bytecode --no-cache \
        -r requirements.lock

COPY models/ models/
COPY registry/ registry/
COPY steps/ steps/
COPY pipelines/ pipelines/
COPY serving/ serving/
ENV PYTHONPATH=/app

# Non-root; infra/k8s runs the MLflow server as this user (fsGroup 1000 on its volume).
RUN groupadd --gid 1000 hiergan \
    && useradd --uid 1000 --gid 1000 --create-home hiergan \
    && chown -R hiergan:hiergan /app
USER 1000:1000
