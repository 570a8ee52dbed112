"""The out-of-distribution guard: fitted statistics, component scores, the served score.

:class:`OodGuard` holds class-conditional Gaussians (one mean per tree node, one tied precision
matrix per feature layer and level), the pretrained discriminator, how components are combined
and the threshold. It travels inside the classifier artifact as tensors (``ood.safetensors``)
and JSON (``ood.json``): :meth:`to_artifact` / :meth:`from_classifier`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args

import numpy as np
import torch
from torch import Tensor, nn

from models.classifier.io import TrainedClassifier
from models.gan.networks import Discriminator, GanArchitecture
from models.ood.complexity import Compressor, PixelGaussian, complexity_score
from models.ood.scores import (
    LAYERS,
    GuardedOutputs,
    ProjectedProducts,
    energy_score,
    knn_distance,
    leaf_neighbours,
    mean_quadratic_forms,
    min_mahalanobis,
)
from models.tree.merge import TreeTensors

FORMAT = 1
D_PREFIX = "discriminator."
NEIGHBOURS = "neighbours"  # the kNN scorer's training features (layer: KNN_LAYER)
NEIGHBOUR_LEAVES = "neighbour_leaves"  # their leaves, when the search reads the top leaves' only
KNN_LAYER = "neck"
PIXELS = "pixels."  # the complexity scorer's pixel Gaussian: mean, precision
# the pseudo-level of one Gaussian over all training features of a layer (relative Mahalanobis)
BACKGROUND = "background"
ScoreT = TypeVar("ScoreT", Tensor, np.ndarray)


def scorer_parts(scorer: str, levels: list[str], has_discriminator: bool) -> list[str]:
    """The components a scorer combines (one component: served as it is).

    ``mahalanobis`` sums both layers at the leaf level; ``knn_complexity`` sums the neck's
    nearest-neighbour distance and the complexity-corrected pixel likelihood: what the
    network's features have never seen, and what the pixels' density explains worse than a
    generic compressor; ``rmd_complexity`` puts the neck's relative Mahalanobis distance (Ren
    et al. 2021: the leaf Gaussians' distance minus that of one Gaussian over all training
    features) in the kNN distance's place; ``knn_rmd_complexity`` (the default) sums all
    three: on images the detection bench does not contain it beat ``knn_complexity`` on every
    set (``bench/ood_selection.py``); ``knn_rmd`` leaves the complexity term out
    (:mod:`models.ood.complexity` says what it costs); ``combined`` (the first guard's
    default) sums ``mahalanobis``, the tree's energy and the discriminator's realness.
    Several components are each standardised on the validation split before they are summed.
    """
    leaf = levels[-1]
    maha = [f"maha_{layer}_{leaf}" for layer in LAYERS]
    parts = {
        "msp": ["msp"],
        "energy": ["energy"],
        "realness": ["realness"],
        "mahalanobis": maha,
        "knn": ["knn"],
        "complexity": ["complexity"],
        "knn_complexity": ["knn", "complexity"],
        "rmd_complexity": [f"rmd_neck_{leaf}", "complexity"],
        "knn_rmd_complexity": ["knn", f"rmd_neck_{leaf}", "complexity"],
        "knn_rmd": ["knn", f"rmd_neck_{leaf}"],
        "combined": [*maha, "energy", *(["realness"] if has_discriminator else [])],
    }[scorer]
    if "realness" in parts and not has_discriminator:
        raise ValueError("the realness scorer needs the GAN discriminator")
    return parts


@dataclass
class OodGuard:
    """Fitted statistics and the served score's definition.

    Attributes:
        gaussians: ``{"<layer>.<level>": (means [K, D], precision [D, D])}``.
        discriminator: the pretrained GAN discriminator (eval mode), or ``None``.
        scorer: the served scorer's name; ``parts`` its components.
        standardization: ``{component: (location, scale)}`` on the validation split.
        threshold: scores above it are out of distribution (the float32 network's scores).
        runtime_thresholds: ``{quantization: threshold}`` at the same true-positive rate on the
            validation split scored by that int8 runtime
            (:func:`~models.ood.fit.runtime_thresholds`): an int8 network moves the scores a
            little, and the service answers with the threshold of the runtime it serves
            (:meth:`threshold_for`). Empty for artifacts from before it and for a guard
            switched to another scorer.
        info: JSON facts (tpr, images fitted on, validation share flagged ...).
        neighbours: ``[N, D]`` L2-normalised neck features of training images (the ``knn``
            component), or ``None``.
        knn_k: which nearest neighbour ``knn`` measures the distance to.
        neighbour_leaves: ``[N]`` the leaf of each bank image, or ``None``.
        knn_leaves: ``knn`` compares an image with the bank images of its ``knn_leaves`` most
            probable leaves only (then ``neighbour_leaves`` is set), or with all (``None``).
        coarse_search: a first stage for a two-stage kNN search (see
            :func:`~models.ood.scores.knn_distance`), or ``None`` (one float32 pass). Not saved:
            :meth:`use_coarse_search` makes it from the bank at load, for serving.
        pixel_gaussian: the training images' pixel Gaussian and the compressor (the
            ``complexity`` component), or ``None``.
    """

    gaussians: dict[str, tuple[Tensor, Tensor]]
    discriminator: Discriminator | None
    scorer: str
    parts: list[str]
    standardization: dict[str, tuple[float, float]] = field(default_factory=dict)
    threshold: float = float("inf")
    runtime_thresholds: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    neighbours: Tensor | None = None
    knn_k: int = 10
    neighbour_leaves: Tensor | None = None
    knn_leaves: int | None = None
    pixel_gaussian: PixelGaussian | None = None
    coarse_search: nn.Module | None = None
    # each Gaussian's mean_quadratic_forms, computed once per device (not saved)
    _mean_quads: dict[str, Tensor] = field(default_factory=dict, repr=False, compare=False)

    def threshold_for(self, quantization: str) -> float:
        """The threshold of the scores ``quantization`` gives (float32's when it has none)."""
        return self.runtime_thresholds.get(quantization, self.threshold)

    def use_coarse_search(self) -> OodGuard:
        """Search the kNN bank in two stages (projected products, then float32); return self.

        Call it after :meth:`to`: the first stage is made on the bank's device.
        """
        if self.neighbours is not None:
            self.coarse_search = ProjectedProducts(self.neighbours)
        return self

    def to(self, device: torch.device | str) -> OodGuard:
        """Move the statistics and the discriminator to ``device`` (in place); return self."""
        self.gaussians = {k: (m.to(device), p.to(device)) for k, (m, p) in self.gaussians.items()}
        self._mean_quads = {}
        if self.neighbours is not None:
            self.neighbours = self.neighbours.to(device)
        if self.neighbour_leaves is not None:
            self.neighbour_leaves = self.neighbour_leaves.to(device)
        if self.coarse_search is not None:
            self.coarse_search.to(device)
        if self.pixel_gaussian is not None:
            g = self.pixel_gaussian
            self.pixel_gaussian = g._replace(
                mean=g.mean.to(device), precision=g.precision.to(device)
            )
        if self.discriminator is not None:
            self.discriminator.to(device)
        return self

    def components(
        self,
        out: GuardedOutputs,
        tt: TreeTensors,
        leaf_probs: Tensor,
        names: list[str] | None = None,
    ) -> dict[str, Tensor]:
        """Component scores ``[B]`` (higher = more unusual) from one pass's outputs.

        Args:
            out: the pass's outputs.
            tt: the tree as tensors.
            leaf_probs: the calibrated leaf probabilities of the same pass.
            names: which components (default: every one the guard can compute).
        """

        def wanted(*candidates: str) -> bool:
            return names is None or any(c in names for c in candidates)

        comps: dict[str, Tensor] = {}
        if wanted("msp"):
            comps["msp"] = 1.0 - leaf_probs.max(dim=1).values
        if wanted("energy"):
            comps["energy"] = energy_score(out.logits, tt)
        for key, (means, precision) in self.gaussians.items():
            layer, level = key.split(".", 1)
            levels = self.levels if level == BACKGROUND else [level]
            name = f"maha_{layer}_{level}"
            if wanted(name, *(f"rmd_{layer}_{lv}" for lv in levels)):
                if key not in self._mean_quads:
                    self._mean_quads[key] = mean_quadratic_forms(means, precision)
                comps[name] = min_mahalanobis(
                    out.layers[layer], means, precision, self._mean_quads[key]
                )
        for key in self.gaussians:  # relative: minus the distance to all training features
            layer, level = key.split(".", 1)
            name, background = f"rmd_{layer}_{level}", f"maha_{layer}_{BACKGROUND}"
            if level != BACKGROUND and background in comps and wanted(name):
                comps[name] = comps[f"maha_{layer}_{level}"] - comps[background]
        if out.realness is not None and wanted("realness"):
            comps["realness"] = -out.realness
        if self.neighbours is not None and wanted("knn"):
            allowed = leaf_neighbours(self.neighbour_leaves, leaf_probs, self.knn_leaves)
            comps["knn"] = knn_distance(
                out.layers[KNN_LAYER], self.neighbours, self.knn_k, self.coarse_search, allowed
            )
        if self.pixel_gaussian is not None and wanted("complexity"):
            if out.pixels is None:
                raise ValueError("the complexity component needs the pass's pixel view")
            comps["complexity"] = complexity_score(out.pixels, self.pixel_gaussian)
        return comps

    @property
    def levels(self) -> list[str]:
        """The tree levels the Gaussians are fitted per, top first (without the background)."""
        levels = (k.split(".", 1)[1] for k in self.gaussians)
        return [lv for lv in dict.fromkeys(levels) if lv != BACKGROUND]

    @property
    def needs_discriminator(self) -> bool:
        """Whether the served score reads the discriminator."""
        return "realness" in self.parts

    def combine(self, comps: Mapping[str, ScoreT]) -> ScoreT:
        """The served score ``[B]``: the one component, or the sum of standardised components.

        ``comps`` are tensors or NumPy arrays (the serving path's), all of one kind.
        """
        if len(self.parts) == 1:
            return comps[self.parts[0]]
        standardized = [
            (comps[name] - self.standardization[name][0]) / self.standardization[name][1]
            for name in self.parts
        ]
        return sum(standardized[1:], standardized[0])

    def to_artifact(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """``(tensors, JSON)`` for ``TrainedClassifier.ood_state`` / ``ood_info``."""
        state: dict[str, Tensor] = {}
        for key, (means, precision) in self.gaussians.items():
            state[f"gaussian.{key}.means"] = means.detach().cpu().contiguous()
            state[f"gaussian.{key}.precision"] = precision.detach().cpu().contiguous()
        meta: dict[str, Any] = {
            "format": FORMAT,
            "scorer": self.scorer,
            "parts": list(self.parts),
            "standardization": {k: list(v) for k, v in self.standardization.items()},
            "threshold": float(self.threshold),
            "runtime_thresholds": {k: float(v) for k, v in self.runtime_thresholds.items()},
            "gaussians": list(self.gaussians),  # layer.level, levels top first
            "discriminator": None,
            "neighbours": None,
            "pixels": None,
            "info": self.info,
        }
        if self.pixel_gaussian is not None:
            g = self.pixel_gaussian
            state[PIXELS + "mean"] = g.mean.detach().cpu().contiguous()
            state[PIXELS + "precision"] = g.precision.detach().cpu().contiguous()
            meta["pixels"] = {
                "logdet": g.logdet,
                "dim": len(g.mean),
                "density": g.density,
                "compressor": g.compressor,
            }
        if self.neighbours is not None:
            state[NEIGHBOURS] = self.neighbours.detach().cpu().contiguous()
            meta["neighbours"] = {
                "layer": KNN_LAYER,
                "k": self.knn_k,
                "count": len(state[NEIGHBOURS]),
                "leaves": self.knn_leaves,
            }
            if self.neighbour_leaves is not None:
                state[NEIGHBOUR_LEAVES] = self.neighbour_leaves.detach().cpu().contiguous()
        if self.discriminator is not None:
            meta["discriminator"] = self.discriminator.arch.model_dump()
            for k, v in self.discriminator.state_dict().items():
                state[D_PREFIX + k] = v.detach().cpu().contiguous().clone()
        return state, meta

    @classmethod
    def from_artifact(cls, state: dict[str, Tensor], meta: dict[str, Any]) -> OodGuard:
        """Inverse of :meth:`to_artifact`.

        Raises:
            ValueError: an unknown format, or tensors the JSON does not describe.
        """
        if meta.get("format") != FORMAT:
            raise ValueError(f"ood.json: unknown format {meta.get('format')!r}, expected {FORMAT}")
        gaussians = {}
        for key in meta["gaussians"]:
            try:
                gaussians[key] = (
                    state[f"gaussian.{key}.means"],
                    state[f"gaussian.{key}.precision"],
                )
            except KeyError as err:
                raise ValueError(f"ood.safetensors lacks {err.args[0]}") from None
        discriminator = None
        if meta.get("discriminator") is not None:
            discriminator = Discriminator(GanArchitecture(**meta["discriminator"]))
            d_state = {k[len(D_PREFIX) :]: v for k, v in state.items() if k.startswith(D_PREFIX)}
            discriminator.load_state_dict(d_state)
            discriminator.eval()
        neighbours, knn_k, neighbour_leaves, knn_leaves = None, 10, None, None
        if meta.get("neighbours") is not None:
            if NEIGHBOURS not in state:
                raise ValueError(f"ood.safetensors lacks {NEIGHBOURS}")
            neighbours, knn_k = state[NEIGHBOURS], int(meta["neighbours"]["k"])
            knn_leaves = meta["neighbours"].get("leaves")  # absent before the option
            if knn_leaves is not None:
                neighbour_leaves, knn_leaves = state.get(NEIGHBOUR_LEAVES), int(knn_leaves)
                if neighbour_leaves is None or neighbour_leaves.shape != neighbours.shape[:1]:
                    n = len(neighbours)
                    raise ValueError(f"ood.safetensors: {NEIGHBOUR_LEAVES} needs {n} leaves")
        pixel_gaussian = None
        if meta.get("pixels") is not None:
            pixel_gaussian = _saved_pixel_gaussian(state, meta["pixels"])
        return cls(
            neighbours=neighbours,
            knn_k=knn_k,
            neighbour_leaves=neighbour_leaves,
            knn_leaves=knn_leaves,
            pixel_gaussian=pixel_gaussian,
            gaussians=gaussians,
            discriminator=discriminator,
            scorer=meta["scorer"],
            parts=list(meta["parts"]),
            standardization={
                k: (float(v[0]), float(v[1])) for k, v in meta["standardization"].items()
            },
            threshold=float(meta["threshold"]),
            runtime_thresholds={k: float(v) for k, v in meta.get("runtime_thresholds", {}).items()},
            info=dict(meta.get("info", {})),
        )

    @classmethod
    def from_classifier(cls, classifier: TrainedClassifier) -> OodGuard | None:
        """The guard a classifier artifact carries, or ``None`` (an artifact fitted without)."""
        if classifier.ood_info is None:
            return None
        return cls.from_artifact(classifier.ood_state, classifier.ood_info)


def _saved_pixel_gaussian(state: dict[str, Tensor], pixels: dict[str, Any]) -> PixelGaussian:
    """The ``complexity`` component's Gaussian and compressor from ``ood.safetensors`` / ``.json``.

    Raises:
        ValueError: a tensor missing, a precision of neither ``[D]`` nor ``[D, D]``, or an
            unknown compressor.
    """
    try:
        mean, precision = state[PIXELS + "mean"], state[PIXELS + "precision"]
    except KeyError as err:
        raise ValueError(f"ood.safetensors lacks {err.args[0]}") from None
    d = len(mean)
    if tuple(precision.shape) not in ((d,), (d, d)):
        raise ValueError(
            f"ood.safetensors: {PIXELS}precision has shape {list(precision.shape)}, expected "
            f"[{d}] (diagonal) or [{d}, {d}] (full) for {d} pixels"
        )
    compressor = pixels.get("compressor", "png")  # artifacts from before the choice: PNG
    if compressor not in get_args(Compressor):
        expected = " or ".join(get_args(Compressor))
        raise ValueError(f"ood.json: unknown pixels.compressor {compressor!r}, expected {expected}")
    return PixelGaussian(mean, precision, float(pixels["logdet"]), compressor)
