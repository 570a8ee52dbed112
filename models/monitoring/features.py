"""What the drift monitor compares: one row of features per image.

Each image becomes a row of

- ``emb_pc1 ... emb_pcK``: the classifier's trunk features (the GAN discriminator's pooled
  activations) projected on principal components fitted on the reference set;
- ``img_mean, img_std, img_min, img_max, img_edges``: simple image statistics (pixels in [0, 1];
  ``img_edges`` is the mean absolute difference between neighbouring pixels);
- ``pred_<level>`` (categorical) and ``conf_<level>`` per tree level: the calibrated prediction's
  node at that level (global argmax over the leaves, so the nodes form a path) and its marginal
  probability;
- ``ood_score``: the served out-of-distribution score (:mod:`models.ood`), when the model carries
  a guard.

Embeddings, predictions and the OOD score come from one forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field

from models.classifier.io import TrainedClassifier
from models.classifier.network import HierarchicalClassifier
from models.ood.guard import OodGuard
from models.ood.scores import guarded_forward
from models.runtime.device import resolve_device
from models.runtime.tensors import map_image_batches
from models.tree.hierarchy import Hierarchy
from models.tree.merge import TreeTensors, node_probs

IMAGE_STAT_COLUMNS = ("img_mean", "img_std", "img_min", "img_max", "img_edges")
OOD_COLUMN = "ood_score"


class DriftFeatureConfig(BaseModel):
    """How images become drift features (``features:`` in the monitor YAML)."""

    model_config = ConfigDict(extra="forbid")

    n_components: int = Field(8, ge=1, le=64, description="principal components of embeddings")
    batch_size: int = Field(512, ge=1, description="images per forward pass")
    device: str = Field("cpu", description="cpu, cuda or auto")
    seed: int = Field(0, description="seed of the randomised PCA")


@dataclass(frozen=True)
class DriftColumns:
    """Column names of a drift frame, by the type Evidently should treat them as."""

    numerical: list[str]
    categorical: list[str]

    @property
    def all(self) -> list[str]:
        """Every column, numerical first."""
        return [*self.numerical, *self.categorical]


def drift_columns(tree: Hierarchy, n_components: int, ood: bool = False) -> DriftColumns:
    """The columns :func:`drift_frame` produces for a tree and a number of components."""
    numerical = [f"emb_pc{i + 1}" for i in range(n_components)]
    numerical += list(IMAGE_STAT_COLUMNS)
    numerical += [f"conf_{name}" for name in tree.level_names]
    numerical += [OOD_COLUMN] if ood else []
    return DriftColumns(numerical, [f"pred_{name}" for name in tree.level_names])


def check_images(images: np.ndarray, shape: tuple[int, int, int], where: str) -> np.ndarray:
    """``images`` as uint8 ``[N, H, W, C]`` of the model's shape (``[N, H, W]`` gets its axis).

    Raises:
        ValueError: wrong dtype or shape, or no images; the message names ``where``.
    """
    arr = np.asarray(images)
    if arr.ndim == 3 and shape[2] == 1:
        arr = arr[..., None]
    if arr.dtype != np.uint8:
        raise ValueError(f"{where}: images must be uint8, got {arr.dtype}")
    if arr.ndim != 4 or tuple(arr.shape[1:]) != tuple(shape):
        raise ValueError(
            f"{where}: expected images of shape [N, {shape[0]}, {shape[1]}, {shape[2]}], "
            f"got {list(arr.shape)}"
        )
    if len(arr) == 0:
        raise ValueError(f"{where}: no images")
    return arr


@dataclass
class ScoredImages:
    """One forward pass over a batch: trunk features, leaf probabilities, the OOD score."""

    embeddings: np.ndarray  # [N, feature_dim] float32
    leaf_probs: np.ndarray  # [N, n_leaves] float32
    ood_score: np.ndarray | None = None  # [N], when the model carries a guard


@torch.inference_mode()
def score_images(
    classifier: TrainedClassifier,
    images: np.ndarray,
    model: HierarchicalClassifier | None = None,
    batch_size: int = 512,
    guard: OodGuard | None = None,
) -> ScoredImages:
    """Trunk features, calibrated leaf probabilities (and the guard's score) of uint8 images."""
    model = model or classifier.build()
    tt = TreeTensors(classifier.tree, next(model.parameters()).device)
    discriminator = guard.discriminator if guard and guard.needs_discriminator else None

    def score(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        out = guarded_forward(model, discriminator, x)
        logits = [z.float() for z in out.logits]
        probs = classifier.leaf_probs(logits, calibrated=True)
        ood = None
        if guard is not None:
            ood = guard.combine(guard.components(out, tt, probs, guard.parts)).cpu().numpy()
        return out.pooled.float().cpu().numpy(), probs.cpu().numpy(), ood

    batches = map_image_batches(model, score, images, batch_size)
    ood_score = np.concatenate([b[2] for b in batches]) if guard is not None else None
    return ScoredImages(
        np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]), ood_score
    )


@dataclass
class Projection:
    """Principal components of reference embeddings; projects any batch onto them.

    Attributes:
        mean: ``[D]`` reference mean.
        components: ``[D, K]`` orthonormal directions, largest variance first.
        explained_variance_ratio: ``[K]`` share of the reference's total variance per component.
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray

    @classmethod
    def fit(cls, embeddings: np.ndarray, n_components: int, seed: int = 0) -> Projection:
        """Randomised PCA (``torch.pca_lowrank``) of ``[N, D]`` reference embeddings."""
        n, d = embeddings.shape
        k = min(n_components, n - 1, d)
        if k < 1:
            raise ValueError(f"PCA needs at least 2 reference rows, got {n}")
        x = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
        mean = x.mean(0)
        centred = x - mean
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # a few extra directions and power iterations make the top k accurate
            _, s, v = torch.pca_lowrank(centred, q=min(k + 10, n, d), center=False, niter=4)
        total = centred.pow(2).sum() / max(n - 1, 1)
        explained = s[:k].pow(2) / max(n - 1, 1) / total.clamp_min(1e-12)
        return cls(mean.numpy(), v[:, :k].contiguous().numpy(), explained.numpy())

    @property
    def n_components(self) -> int:
        """Number of components K."""
        return int(self.components.shape[1])

    def transform(self, embeddings: np.ndarray) -> np.ndarray:
        """``[N, D] -> [N, K]`` scores on the components."""
        if embeddings.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"embeddings have {embeddings.shape[1]} dimensions, the projection was fitted "
                f"on {self.mean.shape[0]}"
            )
        return (embeddings - self.mean) @ self.components


def image_statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image mean, std, min, max and edge energy of uint8 ``[N, H, W, C]`` (pixels / 255)."""
    x = images.astype(np.float32) / 255.0
    flat = x.reshape(len(x), -1)
    edges = 0.5 * (
        np.abs(np.diff(x, axis=1)).mean(axis=(1, 2, 3))
        + np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3))
    )
    return {
        "img_mean": flat.mean(1),
        "img_std": flat.std(1),
        "img_min": flat.min(1),
        "img_max": flat.max(1),
        "img_edges": edges,
    }


def prediction_columns(leaf_probs: np.ndarray, tree: Hierarchy) -> dict[str, np.ndarray]:
    """``pred_<level>`` (node name) and ``conf_<level>`` (its marginal probability) per level."""
    leaves = leaf_probs.argmax(1)
    paths = tree.leaf_paths[leaves]  # [N, depth] node index per level
    probs = torch.from_numpy(np.ascontiguousarray(leaf_probs, dtype=np.float32))
    tt = TreeTensors(tree)
    rows = np.arange(len(leaves))
    out: dict[str, np.ndarray] = {}
    for level, name in enumerate(tree.level_names):
        marginal = node_probs(probs, tt, level).numpy()
        nodes = np.asarray(tree.level_nodes[level], dtype=object)
        out[f"pred_{name}"] = nodes[paths[:, level]]
        out[f"conf_{name}"] = marginal[rows, paths[:, level]].astype(np.float32)
    return out


def drift_frame(
    images: np.ndarray, scored: ScoredImages, projection: Projection, tree: Hierarchy
) -> pd.DataFrame:
    """The drift features of a batch, one row per image, columns as :func:`drift_columns`."""
    data: dict[str, np.ndarray] = {}
    scores = projection.transform(scored.embeddings)
    for i in range(projection.n_components):
        data[f"emb_pc{i + 1}"] = scores[:, i].astype(np.float32)
    data.update(image_statistics(images))
    preds = prediction_columns(scored.leaf_probs, tree)
    data.update({k: v for k, v in preds.items() if k.startswith("conf_")})
    data.update({k: v for k, v in preds.items() if k.startswith("pred_")})
    if scored.ood_score is not None:
        data[OOD_COLUMN] = scored.ood_score.astype(np.float32)
    frame = pd.DataFrame(data)
    for column in (k for k in preds if k.startswith("pred_")):
        frame[column] = frame[column].astype(str)
    return frame


class DriftFeatureExtractor:
    """Reference and batch features from one classifier, PCA fitted on the reference.

    Args:
        classifier: the trained, calibrated classifier (the champion).
        config: number of components, batch size, device, seed.
    """

    def __init__(self, classifier: TrainedClassifier, config: DriftFeatureConfig) -> None:
        self.classifier = classifier
        self.config = config
        device = resolve_device(config.device)
        self.model = classifier.build(device)
        self.guard = OodGuard.from_classifier(classifier)
        if self.guard is not None:
            self.guard.to(device)
        arch = classifier.architecture
        self.image_shape = (arch.image_size, arch.image_size, arch.channels)
        self.projection: Projection | None = None

    @property
    def columns(self) -> DriftColumns:
        """The frame's columns by type (after :meth:`fit_reference`)."""
        k = self.projection.n_components if self.projection else self.config.n_components
        return drift_columns(self.classifier.tree, k, ood=self.guard is not None)

    def _score(self, images: np.ndarray) -> ScoredImages:
        return score_images(self.classifier, images, self.model, self.config.batch_size, self.guard)

    @property
    def ood_threshold(self) -> float | None:
        """The guard's threshold, or None when the model carries no guard."""
        return self.guard.threshold if self.guard is not None else None

    def fit_reference(self, images: np.ndarray) -> pd.DataFrame:
        """Fit the projection on the reference images and return their frame."""
        images = check_images(images, self.image_shape, "reference")
        scored = self._score(images)
        self.projection = Projection.fit(
            scored.embeddings, self.config.n_components, self.config.seed
        )
        return drift_frame(images, scored, self.projection, self.classifier.tree)

    def transform(self, images: np.ndarray, where: str = "batch") -> pd.DataFrame:
        """The frame of a batch, projected on the reference's components."""
        if self.projection is None:
            raise RuntimeError("fit_reference must run before transform")
        images = check_images(images, self.image_shape, where)
        scored = self._score(images)
        return drift_frame(images, scored, self.projection, self.classifier.tree)
