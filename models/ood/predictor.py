"""Predictions with the guard's verdict: one batched pass gives the answer and the OOD score."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.classifier.io import TrainedClassifier
from models.classifier.prediction import Predictor
from models.ood.complexity import MAX_SIZE as PIXEL_VIEW_MAX
from models.ood.complexity import served_complexity
from models.ood.guard import OodGuard
from models.ood.scores import guarded_forward
from models.ood.served_score import LAYER as NECK
from models.ood.served_score import ServedScore
from models.runtime.quantize import Quantization


class GuardedPredictor(Predictor):
    """A :class:`Predictor` whose answers carry ``"ood": {"score", "threshold", "is_ood"}``.

    A classifier saved without a guard (older artifacts) answers ``"ood": None``; ``has_guard``
    says which. ``threshold`` is the one fitted for the runtime that runs
    (:meth:`OodGuard.threshold_for`).

    Args:
        classifier: the trained, calibrated classifier (with its guard, if fitted).
        device: where the networks run.
        quantization: the classifier's runtime (see :class:`Predictor`). The guard's
            statistics stay float32; on the CPU its kNN search runs in two stages
            (:meth:`OodGuard.use_coarse_search`) and the default score is computed in NumPy
            (:class:`~models.ood.served_score.ServedScore`).
    """

    def __init__(
        self,
        classifier: TrainedClassifier,
        device: torch.device | str = "cpu",
        quantization: Quantization = "none",
    ) -> None:
        super().__init__(classifier, device, quantization)
        self.guard = OodGuard.from_classifier(classifier)
        self.threshold: float | None = None
        if self.guard is not None:
            self.threshold = self.guard.threshold_for(self.quantization)
        parts = self.guard.parts if self.guard is not None else []
        self._need_trunk = any(p.startswith("maha_trunk") for p in parts)
        # the complexity component is scored from the uint8 input itself (served_complexity, on
        # the CPU) when the pixel view keeps the input's size
        self._pixels_of_input = "complexity" in parts and self.image_shape[0] <= PIXEL_VIEW_MAX
        self._network_parts = [
            p for p in parts if not (p == "complexity" and self._pixels_of_input)
        ]
        self._discriminator = None
        self._served: ServedScore | None = None  # the served score in NumPy (CPU)
        if self.guard is not None:
            if self._pixels_of_input:
                g = self.guard.pixel_gaussian
                self._pixel_gaussian = g._replace(
                    mean=g.mean.cpu().numpy(), precision=g.precision.cpu().numpy()
                )
            self.guard.to(device)
            if self.guard.needs_discriminator:
                self._discriminator = self.guard.discriminator
            if torch.device(device).type == "cpu":
                self.guard.use_coarse_search()
                if ServedScore.serves(self.guard, self.image_shape):
                    self._served = ServedScore(self.guard)
            if self.guard.discriminator is not None:
                self.guard.discriminator.to(memory_format=torch.channels_last)

    @property
    def has_guard(self) -> bool:
        """Whether the model carries OOD statistics."""
        return self.guard is not None

    @torch.inference_mode()
    def scores(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated leaf probabilities ``[N, n_leaves]`` and served OOD scores ``[N]``.

        The serving path: checked uint8 ``[N, H, W, C]`` in one pass, no re-batching. On the CPU,
        a score of neck and pixel components (the default) is computed by
        :class:`~models.ood.served_score.ServedScore` from the neck features and the input;
        otherwise it is the sum of :meth:`served_components`.
        """
        assert self.guard is not None
        if self._served is None:
            probs, served = self.served_components(images)
            return probs, self.guard.combine(served)
        x = self.model_input(images)
        out = guarded_forward(self.model, None, x, need_trunk=False, need_pixels=False)
        probs = self.calibrated_probs(out.logits)
        return probs, self._served(out.layers[NECK].float().numpy(), images, probs)

    @torch.inference_mode()
    def served_components(self, images: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Calibrated leaf probabilities ``[N, n_leaves]`` and the served score's components.

        Checked uint8 ``[N, H, W, C]`` in one pass, no re-batching, only the served score's
        components; the same numbers as :func:`~models.ood.fit.score_images` (fitting and
        evaluation) up to float32 rounding, which a unit test holds it to. The components that
        read the input's pixels are computed in NumPy from the input itself, the others in
        torch; :meth:`scores` serves their sum, or on the CPU the default score's sum computed
        at once (:class:`~models.ood.served_score.ServedScore`). Why not a
        thread for the pixel component beside the forward pass (an earlier version): served
        sequentially on 2 cores, /classify p50 2.26 ms inline vs 2.42 ms with the thread (8
        interleaved rounds; the threads contend for the interpreter lock the small ops need).
        Measured again with the NumPy components, in process, one image, ``static-int8``, two
        BLAS threads: the guard adds 0.38 ms inline, 0.45 ms with the pixel component in a thread.
        """
        guard = self.guard
        assert guard is not None
        x = self.model_input(images)
        out = guarded_forward(
            self.model,
            self._discriminator,
            x,
            need_trunk=self._need_trunk,
            need_pixels="complexity" in self._network_parts,
        )
        probs = self.calibrated_probs(out.logits)
        probs_t = torch.from_numpy(probs).to(x.device)
        comps = guard.components(out, self.tree_tensors, probs_t, self._network_parts)
        served = {name: comps[name].cpu().numpy() for name in self._network_parts}
        if self._pixels_of_input:
            served["complexity"] = served_complexity(images, self._pixel_gaussian)
        return probs, served

    def classify(self, images: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any] | None]]:
        """Calibrated leaf probabilities ``[N, n_leaves]`` and one OOD verdict per image.

        ``images`` are checked uint8 ``[N, H, W, C]``; without a guard every verdict is None.
        """
        if self.guard is None:
            return self.leaf_probs(images), [None] * len(images)
        probs, scores = self.scores(images)
        assert self.threshold is not None
        threshold, shown = self.threshold, round(self.threshold, 4)
        verdicts: list[dict[str, Any] | None] = [
            {"score": round(s, 4), "threshold": shown, "is_ood": s > threshold}
            for s in scores.tolist()
        ]
        return probs, verdicts

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
