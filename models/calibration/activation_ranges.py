"""The int8 runtime's calibration: activation ranges fitted on images, kept in the artifact.

Probability calibration (the rest of this package) makes the outputs mean what they say; this
makes the int8 convolutions of ``quantization: static-int8`` (:mod:`models.runtime.static_int8`)
see the value ranges the model's activations really take. Both are fitted once, after training,
on held-out images, and travel with the classifier.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from models.classifier.io import TrainedClassifier
from models.runtime.static_int8 import fit_activation_ranges


def with_activation_ranges(
    classifier: TrainedClassifier, images: np.ndarray, max_images: int = 2048, seed: int = 0
) -> TrainedClassifier:
    """A copy of ``classifier`` carrying int8 activation ranges fitted on uint8 ``images``.

    Args:
        classifier: the trained classifier.
        images: uint8 ``[N, H, W, C]`` images of the training distribution (the val split).
        max_images: a random subset of at most this many is used (splits may be sorted).
        seed: the subset's seed.

    Raises:
        ValueError: no images.
    """
    if len(images) == 0:
        raise ValueError("activation ranges need at least one image")
    if len(images) > max_images:
        pick = np.random.default_rng(seed).choice(len(images), max_images, replace=False)
        images = images[np.sort(pick)]
    ranges = fit_activation_ranges(classifier.build("cpu"), images)
    return replace(classifier, activation_ranges=ranges, info=dict(classifier.info))
