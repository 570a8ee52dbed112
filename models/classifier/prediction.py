"""Predictions as clients read them: the path through the tree, the leaf, the top-k leaves.

Shared by the HTTP service and the MLflow pyfunc wrapper so both answer the same thing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from models.classifier.io import TrainedClassifier
from models.runtime.quantize import Quantization, quantize_model
from models.runtime.tensors import to_model_range
from models.tree.merge import TreeTensors
from models.tree.numpy_merge import NumpyMerge

logger = logging.getLogger(__name__)


class InputShapeError(ValueError):
    """Images whose shape or dtype the model cannot take; the message says which."""


class Predictor:
    """A calibrated classifier built once, answering batches of uint8 images.

    Args:
        classifier: the trained, calibrated classifier.
        device: where the network runs.
        quantization: ``"dynamic-int8"`` serves the linear layers with int8 weights (CPU only,
            :mod:`models.runtime.quantize`); ``"static-int8"`` the trunk's convolutions and the
            neck, with the activation ranges the artifact carries, each image's answer
            independent of its batch (without ranges: ``dynamic-int8``, with a warning);
            ``"none"`` keeps float32. ``self.quantization`` says what runs.
    """

    def __init__(
        self,
        classifier: TrainedClassifier,
        device: torch.device | str = "cpu",
        quantization: Quantization = "none",
    ) -> None:
        self.classifier = classifier
        self.tree = classifier.tree
        if quantization == "static-int8" and classifier.activation_ranges is None:
            logger.warning(
                "static-int8 asked, but this model carries no activation ranges (an artifact "
                "from before the calibration step fitted them): serving dynamic-int8"
            )
            quantization = "dynamic-int8"
        self.quantization = quantization
        # NHWC uint8 input permuted to NCHW is already channels-last in memory; weights in the
        # same layout save the convolutions a conversion (measured ~20 % at batch 64 on CPU).
        model = classifier.build(device).to(memory_format=torch.channels_last)
        self.model = quantize_model(model, quantization, classifier.activation_ranges)
        self.tree_tensors = TreeTensors(self.tree, device)
        self.image_shape = (
            classifier.architecture.image_size,
            classifier.architecture.image_size,
            classifier.architecture.channels,
        )
        self._level_nodes = self.tree.level_nodes
        self._leaf_paths = self.tree.leaf_paths  # [n_leaves, depth] node index per level
        self._merge = NumpyMerge(self.tree, list(classifier.calibration))  # one map per level
        # [n_leaves, n_nodes of all levels]: leaf probabilities @ this = every node's marginal
        self._node_of_leaf = np.concatenate(
            [tt.cpu().numpy() for tt in self.tree_tensors.leaf_onehot], axis=1
        ).astype(np.float32)
        self._level_offsets = np.cumsum([0, *self.tree.level_sizes])[:-1]

    def check_images(self, images: np.ndarray, where: str = "images") -> np.ndarray:
        """``images`` checked against this model's input shape (see :meth:`check_shape`)."""
        return self.check_shape(images, self.image_shape, where)

    @staticmethod
    def check_shape(
        images: np.ndarray, shape: tuple[int, int, int], where: str = "images"
    ) -> np.ndarray:
        """``images`` as uint8 ``[N, H, W, C]``; a single image or ``[N, H, W]`` gets its axes.

        Raises:
            InputShapeError: wrong dtype, value range or shape (the message names them).
        """
        try:
            arr = np.asarray(images)
        except ValueError as err:  # ragged nested lists
            raise InputShapeError(f"{where}: not a rectangular array ({err})") from None
        h, w, c = shape
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == c and arr.shape[:2] == (h, w)):
            arr = arr[None]
        if arr.ndim == 3 and c == 1:
            arr = arr[..., None]
        if arr.ndim != 4 or arr.shape[1:] != (h, w, c):
            raise InputShapeError(
                f"{where}: expected shape [N, {h}, {w}, {c}] (or [N, {h}, {w}] for one channel), "
                f"got {list(arr.shape)}"
            )
        if len(arr) == 0:
            raise InputShapeError(f"{where}: no images (batch of 0)")
        if arr.dtype != np.uint8:
            if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
                raise InputShapeError(f"{where}: expected numbers, got dtype {arr.dtype}")
            if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 255:
                raise InputShapeError(f"{where}: pixel values must be in [0, 255]")
            if not np.all(arr == np.round(arr)):
                raise InputShapeError(f"{where}: pixel values must be whole numbers in [0, 255]")
            arr = arr.astype(np.uint8)
        return np.ascontiguousarray(arr)

    @torch.inference_mode()
    def leaf_probs(self, images: np.ndarray) -> np.ndarray:
        """``[N, n_leaves]`` calibrated leaf probabilities for checked uint8 images.

        One forward pass of the eval-mode model on the whole batch (the serving path: no
        re-batching, no mode switches, the tree's tensors built once).
        """
        return self.calibrated_probs(self.model(self.model_input(images)))

    def model_input(self, images: np.ndarray) -> torch.Tensor:
        """Checked uint8 ``[N, H, W, C]`` as the network's ``[N, C, H, W]`` in [-1, 1]."""
        x = torch.from_numpy(images).to(self.tree_tensors.leaf_paths.device).permute(0, 3, 1, 2)
        return to_model_range(x)

    def calibrated_probs(self, logits: Sequence[torch.Tensor]) -> np.ndarray:
        """``[N, n_leaves]`` float32 leaf probabilities of per-level logits, calibrated.

        Merged in NumPy (:mod:`models.tree.numpy_merge` says why).
        """
        return self._merge.leaf_probs([z.detach().float().cpu().numpy() for z in logits])

    def describe(
        self,
        leaf_probs: np.ndarray,
        top_k: int = 3,
        extras: Mapping[str, Sequence[Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """One answer per image: the path with a probability per level, the leaf, the top-k.

        Vectorised over the batch; only the answers' dicts are built per image. ``extras`` maps
        a field name to one JSON-able value per image (another output of the same batched pass),
        added to each answer under that name.
        """
        probs = np.asarray(leaf_probs, dtype=np.float32)
        n, n_leaves = probs.shape
        k = max(1, min(top_k, n_leaves))
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]  # [N, k], best first
        leaf = top[:, 0]
        # every node's marginal, then the ones on each predicted leaf's path: [N, depth]
        nodes = probs @ self._node_of_leaf
        path_nodes = self._leaf_paths[leaf]
        path_probs = _rounded(nodes[np.arange(n)[:, None], self._level_offsets + path_nodes])
        top_probs = _rounded(np.take_along_axis(probs, top, axis=1))
        leaves, names = self.tree.leaves, self.tree.level_names
        answers = []
        for leaf_i, nodes_i, pp_i, top_i, tp_i in zip(
            leaf.tolist(),
            path_nodes.tolist(),
            path_probs,
            top.tolist(),
            top_probs,
            strict=True,
        ):
            answers.append(
                {
                    "leaf": leaves[leaf_i],
                    "leaf_index": leaf_i,
                    "probability": tp_i[0],
                    "path": [
                        {"level": name, "label": self._level_nodes[lv][node], "probability": p}
                        for lv, (name, node, p) in enumerate(zip(names, nodes_i, pp_i, strict=True))
                    ],
                    "top_k": [
                        {"label": leaves[j], "probability": q}
                        for j, q in zip(top_i, tp_i, strict=True)
                    ],
                }
            )
        for name, values in (extras or {}).items():
            for answer, value in zip(answers, values, strict=True):
                answer[name] = value
        return answers

    def predict(self, images: np.ndarray, top_k: int = 3) -> list[dict[str, Any]]:
        """Check, classify and describe a batch of images."""
        return self.describe(self.leaf_probs(self.check_images(images)), top_k)


def _rounded(values: np.ndarray) -> list[list[float]]:
    """Probabilities as JSON numbers: float64, 6 decimals."""
    return np.round(values.astype(np.float64), 6).tolist()
