"""A trained hierarchical classifier as one self-contained artifact (safetensors + JSON).

It holds everything needed to predict from raw uint8 images: the architecture, the weights, the
tree, the per-level calibration maps (temperature, vector, matrix or Dirichlet; JSON) and the
preprocessing (size, channels, value range). Serving and evaluation load it with no pickle
involved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from models.classifier.config import ClassifierConfig
from models.classifier.network import HierarchicalClassifier, predict_logits
from models.gan.networks import GanArchitecture
from models.tree.hierarchy import Hierarchy
from models.tree.merge import LevelCalibration, TreeTensors, merged_log_probs

WEIGHTS_FILE = "classifier.safetensors"
INFO_FILE = "classifier.json"
# The out-of-distribution guard (models/ood), when one was fitted: tensors + JSON beside the rest.
OOD_WEIGHTS_FILE = "ood.safetensors"
OOD_INFO_FILE = "ood.json"


@dataclass
class TrainedClassifier:
    """Weights, tree, calibration and preprocessing of a hierarchical classifier.

    Attributes:
        architecture: the GAN architecture the trunk shares.
        config: how it was trained.
        tree: the label tree.
        state: the model's ``state_dict`` (CPU tensors).
        calibration: one map per level (identity until calibrated), applied by
            :func:`models.tree.merge.scale_logits`.
        info: JSON-able facts (dataset hash, GAN run key, label fraction, metrics ...).
        ood_state: tensors of the out-of-distribution guard (:mod:`models.ood`), if fitted.
        ood_info: its JSON description (scorer, threshold, ...); ``None``: no guard (older
            artifacts).
        activation_ranges: the int8 convolutions' input/output ranges, fitted on images
            (:func:`models.runtime.static_int8.fit_activation_ranges`); ``None``: not fitted
            (``static-int8`` serving then falls back to ``dynamic-int8``).
    """

    architecture: GanArchitecture
    config: ClassifierConfig
    tree: Hierarchy
    state: dict[str, Tensor]
    calibration: list[LevelCalibration] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    ood_state: dict[str, Tensor] = field(default_factory=dict)
    ood_info: dict[str, Any] | None = None
    activation_ranges: dict[str, dict[str, list[float]]] | None = None

    def __post_init__(self) -> None:
        if not self.calibration:
            self.calibration = [LevelCalibration() for _ in range(self.tree.depth)]
        if len(self.calibration) != self.tree.depth:
            raise ValueError(
                f"{len(self.calibration)} calibration maps for a tree of depth {self.tree.depth}"
            )

    @property
    def temperatures(self) -> list[float | None]:
        """Per level: its temperature (1.0 when uncalibrated), None where another map is used."""
        return [c.temperature_value for c in self.calibration]

    @temperatures.setter
    def temperatures(self, values: list[float]) -> None:
        self.calibration = [LevelCalibration.temperature(t) for t in values]

    @property
    def calibration_methods(self) -> dict[str, str]:
        """The calibration method of each level, by level name."""
        return {
            name: c.method for name, c in zip(self.tree.level_names, self.calibration, strict=True)
        }

    @property
    def preprocessing(self) -> dict[str, Any]:
        """What an input must become before the model: size, channels, value range."""
        return {
            "image_size": self.architecture.image_size,
            "channels": self.architecture.channels,
            "input": "uint8 [N, H, W, C], scaled to [-1, 1] as x / 127.5 - 1",
        }

    @classmethod
    def from_model(
        cls,
        model: HierarchicalClassifier,
        config: ClassifierConfig,
        tree: Hierarchy,
        info: dict[str, Any],
    ) -> TrainedClassifier:
        """Snapshot a model (weights copied to CPU)."""
        state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        return cls(model.arch, config, tree, state, info=dict(info))

    def build(self, device: torch.device | str = "cpu") -> HierarchicalClassifier:
        """The network with these weights, in eval mode, on ``device``."""
        model = HierarchicalClassifier(self.architecture, self.tree.level_sizes, self.config)
        model.load_state_dict(self.state)
        return model.to(device).eval()

    def logits(
        self, images: np.ndarray, model: HierarchicalClassifier | None = None
    ) -> list[Tensor]:
        """Per-level raw logits for uint8 ``[N, H, W, C]`` images."""
        return predict_logits(model or self.build(), images)

    def leaf_probs(self, logits: list[Tensor], calibrated: bool = True) -> Tensor:
        """``[N, n_leaves]`` merged leaf probabilities, through the calibration maps when asked."""
        tt = TreeTensors(self.tree, logits[0].device)
        return merged_log_probs(logits, tt, self.calibration if calibrated else None).exp()

    def predict_proba(self, images: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """``[N, n_leaves]`` leaf probabilities for uint8 images."""
        return self.leaf_probs(self.logits(images), calibrated).cpu().numpy()

    def save(self, directory: str | Path) -> None:
        """Write ``classifier.safetensors`` and ``classifier.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.state, str(directory / WEIGHTS_FILE))
        meta = {
            "format": 2,
            "architecture": self.architecture.model_dump(),
            "config": self.config.model_dump(),
            "tree": self.tree.to_dict(),
            "calibration": [c.to_dict() for c in self.calibration],
            "temperatures": list(self.temperatures),  # for readers of format 1
            "preprocessing": self.preprocessing,
            "info": self.info,
        }
        if self.activation_ranges is not None:
            meta["activation_ranges"] = self.activation_ranges
        (directory / INFO_FILE).write_text(json.dumps(meta, indent=1, default=str))
        if self.ood_info is not None:
            save_file(self.ood_state, str(directory / OOD_WEIGHTS_FILE))
            (directory / OOD_INFO_FILE).write_text(json.dumps(self.ood_info, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> TrainedClassifier:
        """Inverse of :meth:`save` (safetensors and JSON: loading runs no code)."""
        directory = Path(directory)
        meta = json.loads((directory / INFO_FILE).read_text())
        if "calibration" in meta:
            calibration = [LevelCalibration.from_dict(c) for c in meta["calibration"]]
        else:  # format 1: temperatures only
            calibration = [LevelCalibration.temperature(t) for t in meta["temperatures"]]
        has_ood = (directory / OOD_INFO_FILE).is_file()
        return cls(
            architecture=GanArchitecture(**meta["architecture"]),
            config=ClassifierConfig(**meta["config"]),
            tree=Hierarchy.from_dict(meta["tree"]),
            state=load_file(str(directory / WEIGHTS_FILE)),
            calibration=calibration,
            info=meta.get("info", {}),
            ood_state=load_file(str(directory / OOD_WEIGHTS_FILE)) if has_ood else {},
            ood_info=json.loads((directory / OOD_INFO_FILE).read_text()) if has_ood else None,
            activation_ranges=meta.get("activation_ranges"),
        )
