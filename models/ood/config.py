"""How the out-of-distribution guard is fitted (``ood:`` in the train YAML)."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from models.ood.complexity import Compressor, PixelDensity

Scorer = Literal[
    "msp",
    "energy",
    "mahalanobis",
    "realness",
    "knn",
    "complexity",
    "knn_complexity",
    "rmd_complexity",
    "knn_rmd_complexity",
    "knn_rmd",
    "combined",
]
SCORERS: tuple[str, ...] = get_args(Scorer)  # every scorer's name, in the order above
# the CPU runtimes of models.runtime.quantize that change the network's numbers
Int8Runtime = Literal["dynamic-int8", "static-int8"]


class OodConfig(BaseModel):
    """Which scorer the served guard uses, and what it is fitted on.

    Every scorer is computed from the same forward pass (:func:`models.ood.scores.guarded_forward`);
    ``scorer`` picks the one whose threshold is served. The threshold is the ``tpr`` quantile of
    the validation split's scores: that share of in-distribution images passes; each of
    ``runtime_thresholds`` gets its own, on the same images scored by that int8 runtime, which
    the service answers with when it serves that runtime.
    """

    model_config = ConfigDict(extra="forbid")

    scorer: Scorer = Field(
        "knn_rmd_complexity", description="the served score (higher = more unusual)"
    )
    tpr: float = Field(0.95, gt=0.5, lt=1, description="in-distribution share under threshold")
    runtime_thresholds: list[Int8Runtime] = Field(
        ["dynamic-int8", "static-int8"],
        description="int8 runtimes whose own threshold is set on val (one CPU pass over val each)",
    )
    fit_images: int = Field(
        20000, ge=20, description="train images the Gaussians (features, pixels) are fitted on"
    )
    neighbours: int = Field(
        1,
        ge=1,
        description="knn: distance to the k-th nearest neighbour (1 separates four sets of both "
        "OOD benches better than 2 and than 3, 3 five better than 5, 5 five better than 10; none "
        "worse: bench/results/ood_knn_k_*_ab.md)",
    )
    knn_images: int = Field(
        20000,
        ge=1,
        description="knn: train images (a stratified subset of the fitted ones) it compares with; "
        "searched whole, each costs a dot product per served image: 2,000 or 1,000 instead of "
        "5,000 save 62 / 95 us and separate five OOD sets worse (bench/results/"
        "ood_knn_bank_2000_ab.md), 20,000 separates four better at +233 us "
        "(ood_knn_bank_20000_ab.md); with knn_leaves, a served image reads its leaves' share",
    )
    knn_leaves: int | None = Field(
        1,
        ge=1,
        description="knn: compare an image with the bank images of its knn_leaves most probable "
        "leaves only (None: the whole bank). 20,000 images searched in the most probable leaf's "
        "against 5,000 searched whole: held-out Shirt +0.022, blobs better, none worse, the same "
        "cost one image at a time (bench/results/ood_knn_leaves_1_bank_20000_ab.md); 2 leaves: "
        "held-out Sandal +0.001, Shirt -0.003 (ood_knn_leaves_2_vs_1_ab.md)",
    )
    variance_floor: float = Field(
        4.0, gt=0, description="complexity: added to each pixel's variance (grey levels squared)"
    )
    pixel_density: PixelDensity = Field(
        "diagonal",
        description="complexity: the pixel Gaussian's covariance, diagonal or full (a D x D "
        "product per served image; no set better in the default score: bench/ood_guard_ab.py)",
    )
    compressor: Compressor = Field(
        "zlib",
        description="complexity: the length L(x), zlib level 1 of the pixels, the PNG size "
        "(Serra et al.'s compressor; about three times zlib's cost per served image) or "
        "entropy, the order-0 length of the pixels' left-neighbour differences (no coder run: "
        "~30 us less per served image, but held-out Sandal -0.002, Shirt -0.024; "
        "bench/results/ood_compressor_entropy_ab.md)",
    )
    shrinkage: float = Field(
        1e-3, ge=0, lt=1, description="covariance + shrinkage * mean variance * identity"
    )
    batch_size: int = Field(512, ge=1)
    device: str = Field("auto", description="cpu, cuda or auto")
    seed: int = 0
