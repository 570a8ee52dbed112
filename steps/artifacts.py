"""Artifact names, in one place: steps, pipelines and tests refer to these constants."""

DATASET = "dataset"
DATA_DOCS = "data_docs"
DATA_CHECKS = "data_checks"
GAN = "gan"
