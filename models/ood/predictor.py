"""Predictions with the guard's verdict: one batched pass gives the answer and the OOD score."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from models.classifier.io import TrainedClassifier
from models.classifier.prediction import Predictor
from models.ood.fit import score_images
from models.ood.guard import OodGuard
from models.runtime.quantize import Quantization


class GuardedPredictor(Predictor):
    """A :class:`Predictor` whose answers carry ``"ood": {"score", "threshold", "is_ood"}``.

    A classifier saved without a guard (older artifacts) answers ``"ood": None``; ``has_guard``
    says which.

    Args:
        classifier: the trained, calibrated classifier (with its guard, if fitted).
        device: where the networks run.
        quantization: the classifier's linear layers in int8 or not (see :class:`Predictor`);
            with ``dynamic-int8`` the guard's kNN search also runs its first stage in bfloat16
            (:meth:`OodGuard.use_coarse_search`); its statistics stay float32.
    """

    def __init__(
        self,
        classifier: TrainedClassifier,
        device: torch.device | str = "cpu",
        quantization: Quantization = "none",
    ) -> None:
        super().__init__(classifier, device, quantization)
        self.guard = OodGuard.from_classifier(classifier)
        # the served score's pixel component runs beside the forward pass (models.ood.fit),
        # same numbers: one guarded image 0.16-0.38 ms sooner in process after idle time on 2
        # cores; served /classify p50 lower in 6 of 8 interleaved rounds (median ~0.1 ms)
        self._pixel_pool: ThreadPoolExecutor | None = None
        if self.guard is not None and "complexity" in self.guard.parts:
            workers = 2  # callers may classify from two threads at once (the service does)
            self._pixel_pool = ThreadPoolExecutor(workers, thread_name_prefix="hiergan-pixels")
        if self.guard is not None:
            self.guard.to(device)
            if quantization != "none":
                self.guard.use_coarse_search()
            if self.guard.discriminator is not None:
                self.guard.discriminator.to(memory_format=torch.channels_last)

    @property
    def has_guard(self) -> bool:
        """Whether the model carries OOD statistics."""
        return self.guard is not None

    def classify(self, images: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any] | None]]:
        """Calibrated leaf probabilities ``[N, n_leaves]`` and one OOD verdict per image.

        ``images`` are checked uint8 ``[N, H, W, C]``; without a guard every verdict is None.
        """
        if self.guard is None:
            return self.leaf_probs(images), [None] * len(images)
        scored = score_images(
            self.classifier,
            self.guard,
            images,
            self.model,
            1024,
            every_component=False,
            tt=self.tree_tensors,  # built once (Predictor.__init__), not per request
            pixel_pool=self._pixel_pool,
        )
        threshold = self.guard.threshold
        verdicts: list[dict[str, Any] | None] = [
            {
                "score": round(float(s), 4),
                "threshold": round(threshold, 4),
                "is_ood": bool(s > threshold),
            }
            for s in scored.score
        ]
        return scored.leaf_probs, verdicts

    def answer(self, images: np.ndarray, top_k: int = 3) -> list[dict[str, Any]]:
        """Describe checked images: path, leaf, top-k, and ``ood``."""
        probs, verdicts = self.classify(images)
        answers = self.describe(probs, top_k)
        for answer, verdict in zip(answers, verdicts, strict=True):
            answer["ood"] = verdict
        return answers

    def predict(self, images: np.ndarray, top_k: int = 3) -> list[dict[str, Any]]:
        """Check, classify and describe a batch of images, each with its OOD verdict."""
        return self.answer(self.check_images(images), top_k)
