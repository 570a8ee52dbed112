"""hiergan core: pure PyTorch/numpy, importable without ZenML, MLflow or BentoML."""
