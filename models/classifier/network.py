"""The classifier network: the GAN discriminator's trunk, a shared neck, one head per tree level.

Each level's head scores all of that level's nodes; :mod:`models.tree.merge` turns them into
probabilities conditional on the parent and their product along a path. The from-scratch
baseline is the same network with a randomly initialised trunk.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from models.classifier.config import ClassifierConfig
from models.gan.networks import Discriminator, GanArchitecture
from models.runtime.tensors import map_image_batches
from models.tree.merge import TreeTensors, decode_global, merged_log_probs


class HierarchicalClassifier(nn.Module):
    """``image -> [logits of level 0, ..., logits of the leaf level]``."""

    def __init__(
        self, arch: GanArchitecture, level_sizes: tuple[int, ...], config: ClassifierConfig
    ) -> None:
        super().__init__()
        arch = arch.model_copy(update={"num_classes": 0, "feature_pool": config.feature_pool})
        self.arch = arch
        self.level_sizes = tuple(level_sizes)
        self.backbone = Discriminator(arch)
        self.backbone.head = nn.Identity()  # the real/fake head is not part of the classifier
        self.neck = nn.Sequential(
            nn.Linear(self.backbone.feature_dim, config.hidden),
            nn.BatchNorm1d(config.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
        )
        self.heads = nn.ModuleList(nn.Linear(config.hidden, n) for n in level_sizes)
        self.tta_flip = config.tta_flip

    def load_trunk(self, discriminator_state: dict[str, Tensor]) -> None:
        """Copy the trunk weights of a trained discriminator (its head is dropped)."""
        trunk = {k: v for k, v in discriminator_state.items() if k.startswith("trunk.")}
        missing, unexpected = self.backbone.load_state_dict(trunk, strict=False)
        if unexpected or any(k.startswith("trunk.") for k in missing):
            raise ValueError(f"discriminator weights do not fit the trunk: {missing or unexpected}")

    def trunk_parameters(self) -> list[nn.Parameter]:
        """Parameters of the (GAN-pretrained) trunk."""
        return list(self.backbone.trunk.parameters())

    def forward(self, x: Tensor) -> list[Tensor]:
        """Per-level logits ``[B, n_l]``, top level first.

        With ``tta_flip``, outside training, each level's logits are the mean of those of ``x``
        and of its mirror image (test-time augmentation by the flips the training batches get;
        measured: averaging the logits gains, averaging the features loses accuracy).
        """
        return self.features_and_logits(x)[1]

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The trunk's pooled features ``[B, feature_dim]`` of ``x`` and the per-level logits.

        One pass for both: the drift monitor reads the embeddings and the predictions together.
        """
        if self.tta_flip and not self.training:
            both = self.backbone.features(torch.cat([x, x.flip(-1)]))
            logits = self.logits_from_features(both)
            n = len(x)
            return both[:n], [(z[:n] + z[n:]) / 2 for z in logits]
        features = self.backbone.features(x)
        return features, self.logits_from_features(features)

    def logits_from_features(self, features: Tensor) -> list[Tensor]:
        """Per-level logits from the trunk's pooled features ``[B, feature_dim]`` (one view)."""
        h = self.neck(features)
        return [head(h) for head in self.heads]


@torch.no_grad()
def predict_logits(
    model: HierarchicalClassifier, images: np.ndarray, batch_size: int = 1024
) -> list[Tensor]:
    """Per-level logits for ``[N, H, W, C]`` uint8 images (eval mode), on the model's device."""
    chunks = map_image_batches(model, lambda x: [z.float() for z in model(x)], images, batch_size)
    return [torch.cat([c[lv] for c in chunks]) for lv in range(len(model.level_sizes))]


def fine_accuracy(
    model: HierarchicalClassifier, tt: TreeTensors, images: np.ndarray, labels: np.ndarray
) -> float:
    """Leaf accuracy of the merged (uncalibrated) prediction, global decoding."""
    pred = decode_global(merged_log_probs(predict_logits(model, images), tt)).cpu().numpy()
    return float((pred == labels).mean())
