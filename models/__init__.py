"""The core of hiergan: PyTorch and numpy only, no ZenML, MLflow or BentoML.

One sub-package per concept, in the order the train pipeline meets them: ``data`` (sources and
the dataset artifact), ``validation``, ``gan`` (the generative model), ``classifier`` (one head
per tree level, its training loop), ``calibration``, ``evaluation``, ``attacks`` and
``robustness``, ``monitoring`` (drift); below them ``tree`` (the label tree, merging levels),
``runtime`` (devices, batches through a network, checkpoints) and ``reporting`` (pictures, HTML).
Nothing is imported here: ``import models.gan`` loads the GAN and what it needs, no more.
"""
