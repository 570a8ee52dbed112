"""One forward pass, every out-of-distribution score: softmax, energy, Mahalanobis, realness.

:func:`guarded_forward` runs the classifier the way ``HierarchicalClassifier.forward`` does and
keeps, on the way, what the scorers read: the trunk blocks' channel means and standard
deviations, the neck's
pre-activation, and (when the guard holds one) the pretrained GAN discriminator's realness logit
(Radford et al. 2016). The scorers, higher = more unusual:

- ``msp``: 1 - the calibrated maximum leaf probability (Hendrycks & Gimpel 2017, the baseline);
- ``energy``: -logsumexp over leaves of the path's summed level logits, the tree's free energy
  (Liu et al. 2020 for one flat softmax);
- ``mahalanobis``: the smallest squared Mahalanobis distance to a class mean, class-conditional
  Gaussians with one tied covariance (Lee et al. 2018), per feature layer and tree level;
- ``realness``: minus the discriminator's real/fake logit: a GAN's D was trained to tell the
  training data from anything else;
- ``complexity``: the pixel Gaussian's negative log-likelihood minus the image's compressed
  length (:mod:`models.ood.complexity`, Serrà et al. 2020);
- ``knn``: one minus the cosine similarity of the L2-normalised neck features to their k-th
  nearest neighbour among training images' (Sun et al. 2022, "deep nearest neighbours"): no
  Gaussian assumed, and the normalisation discards the feature norm that simple inputs
  (strokes, glyphs) shrink or inflate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.classifier.network import HierarchicalClassifier
from models.gan.networks import Discriminator
from models.ood.complexity import pixel_view
from models.tree.merge import TreeTensors

LAYERS = ("trunk", "neck")  # feature layers with class-conditional Gaussians


@dataclass
class GuardedOutputs:
    """One pass: per-level logits, feature layers, D's realness, the pooled trunk features."""

    logits: list[Tensor]
    layers: dict[str, Tensor]
    realness: Tensor | None
    pooled: Tensor  # [B, feature_dim]: what the neck reads (the drift monitor's embeddings)
    pixels: Tensor | None  # [B, C, s, s] grey levels 0..255 (complexity.pixel_view)


def guarded_forward(
    model: HierarchicalClassifier,
    discriminator: Discriminator | None,
    x: Tensor,
    need_trunk: bool = True,
    need_pixels: bool = True,
) -> GuardedOutputs:
    """The classifier's forward pass on model-range ``[B, C, H, W]``, with the scorers' inputs.

    ``logits`` equal ``model(x)`` (a unit test holds them to it). ``need_trunk=False`` skips the
    trunk blocks' channel statistics (``layers["trunk"]`` is then absent): a served score that
    reads no trunk Gaussian does not pay for them on every request; ``need_pixels=False``
    likewise skips the pixel view (``pixels`` is then ``None``, ``layers["pixels"]`` absent),
    for a server that scores the pixels from its uint8 input.
    """
    n = len(x)
    tta = model.tta_flip and not model.training
    # as model(x): with TTA the image and its mirror go through in one batch of 2B, their logits
    # averaged; the scorers read the image's own half. Two passes of B cost more (the default
    # model, 2 threads: 1.20 ms vs 0.81 ms for one image, 9.75 ms vs 8.67 ms for 32)
    outs = model.backbone.trunk_outputs(torch.cat([x, x.flip(-1)]) if tta else x)
    z = pooled = model.backbone.pool(outs)
    neck = z
    for module in model.neck:
        z = module(z)
        if isinstance(module, nn.BatchNorm1d):
            neck = z.clone()  # the ReLU after it works in place
    logits = [head(z) for head in model.heads]
    if tta:
        logits = [(v[:n] + v[n:]) / 2 for v in logits]
        pooled, neck = pooled[:n], neck[:n]
        if need_trunk:  # only then are the blocks' outputs read (a slice each costs, served)
            outs = [h[:n] for h in outs]
    realness = None
    if discriminator is not None:
        realness = realness_logit(discriminator, x)
    layers = {"neck": neck.float()}
    pixels = None
    if need_pixels:
        pixels = pixel_view(x)
        layers["pixels"] = pixels.flatten(1)
    if need_trunk:  # each trunk block's channels summarised by their spatial mean and spread
        layers["trunk"] = torch.cat(
            [h.float().mean(dim=(2, 3)) for h in outs] + [h.float().std(dim=(2, 3)) for h in outs],
            dim=1,
        )
    return GuardedOutputs(logits, layers, realness, pooled, pixels)


def realness_logit(discriminator: Discriminator, x: Tensor) -> Tensor:
    """``[B]`` D's real-vs-fake logit; for a K-class (semi-supervised) D, logsumexp of its logits.

    Salimans et al. (2016) read a K-class discriminator's ``D(x) = Z / (Z + 1)`` with
    ``Z = sum_k exp(l_k)``, whose logit is ``logsumexp_k l_k``.
    """
    out = discriminator(x).float()
    return out if out.ndim == 1 else torch.logsumexp(out, dim=1)


def energy_score(logits: list[Tensor], tt: TreeTensors) -> Tensor:
    """``[B]`` -logsumexp over leaves of the sum of the path's level logits (raw, unscaled)."""
    paths = tt.leaf_paths  # [n_leaves, depth]
    path_scores = sum(z.float()[:, paths[:, lv]] for lv, z in enumerate(logits))
    return -torch.logsumexp(path_scores, dim=1)


def knn_distance(
    features: Tensor,
    neighbours: Tensor,
    k: int,
    coarse: Callable[[Tensor], Tensor] | None = None,
    allowed: Tensor | None = None,
) -> Tensor:
    """``[B]`` 1 - cosine similarity of ``[B, D]`` features to their k-th nearest neighbour.

    Args:
        features: raw features (their norm divides the k-th product: a cosine).
        neighbours: ``[N, D]`` L2-normalised training features.
        k: which neighbour (1 = the nearest); at most ``N``.
        coarse: approximate products ``[B, N]`` of the raw features with every neighbour
            (:class:`ProjectedProducts`), or ``None``. When given, the search runs in two
            stages: the approximate products pick :func:`knn_candidates` candidates, whose float32
            products are then computed exactly. The answer is the float32 one unless a true
            k-nearest neighbour ranks below the candidates in the first stage.
        allowed: ``[B, N]`` bool, the neighbours each row may be compared with (the bank
            images of its most probable leaves, :func:`leaf_neighbours`), or ``None`` (all);
            each row needs at least ``k``.
    """
    # the ranking does not depend on the feature's norm: divide the k-th product by it at the
    # end, not all N of them (served one image at a time, every tensor op counts)
    z = features.float()
    norm = z.norm(dim=1).clamp_min(1e-12)  # as F.normalize
    m = knn_candidates(k)
    if coarse is None or m >= len(neighbours):
        products = z @ neighbours.T  # [B, N]
        if allowed is not None:
            products = products.masked_fill(~allowed, -torch.inf)
    else:
        approximate = coarse(z)  # [B, N]
        if allowed is not None:
            approximate = approximate.masked_fill(~allowed, -torch.inf)
        candidates = approximate.topk(m, dim=1).indices  # [B, M]
        products = torch.bmm(neighbours[candidates], z[:, :, None])[:, :, 0]  # [B, M], float32
        if allowed is not None:  # a row with fewer than M allowed neighbours
            products = products.masked_fill(~allowed.gather(1, candidates), -torch.inf)
    return 1.0 - products.topk(k, dim=1).values[:, -1] / norm


def leaf_neighbours(
    neighbour_leaves: Tensor | None, leaf_probs: Tensor, leaves: int | None
) -> Tensor | None:
    """``[B, N]`` bool: the bank images of each row's ``leaves`` most probable leaves, or None.

    ``None`` (compare with every bank image) when ``leaves`` is ``None``.

    Args:
        neighbour_leaves: ``[N]`` the leaf of each bank image (needed with ``leaves``).
        leaf_probs: ``[B, n_leaves]`` (calibrated) leaf probabilities.
        leaves: how many of the most probable leaves, or ``None``.
    """
    if leaves is None:
        return None
    if neighbour_leaves is None:
        raise ValueError("a kNN search of the most probable leaves needs the bank's leaves")
    top = leaf_probs.topk(min(leaves, leaf_probs.shape[1]), dim=1).indices  # [B, c]
    picked = torch.zeros_like(leaf_probs, dtype=torch.bool).scatter_(1, top, True)
    return picked[:, neighbour_leaves.long()]


def knn_candidates(k: int) -> int:
    """How many candidates the first stage of a two-stage kNN search passes on: ``8k + 16``.

    Measured on the default model served ``static-int8``, its test split and every OOD set of
    both benches (31,997 images): with 96 candidates (k = 10) the search returned the float32
    k-th neighbour for every image, with 56 (``4k + 16``, the rule before) not for 5 of them;
    the search costs the same (96 vs 96 us one image after a forward pass; 134 vs 131 us with
    the caches swept as well). With ``k = 5`` (56 candidates), 3 (40), 2 (32) and the served 1
    (24), on the same model, its test split and both benches' sets (31,997 images), every k-th
    neighbour was the float32 one too.
    """
    return 8 * k + 16


class ProjectedProducts(nn.Module):
    """A first stage for :func:`knn_distance`: ``z -> (z @ basis) @ (neighbours @ basis).T``.

    ``basis`` holds the top ``dim`` right singular vectors of the (L2-normalised) bank: the
    products are those of the features' and neighbours' projections on the subspace where the
    bank varies most, a quarter of the bytes and multiply-adds of the full products at
    ``dim = 64`` of 256. Made at load from the bank itself (an eigendecomposition of
    ``neighbours.T @ neighbours``): nothing more is saved with the guard.

    Why not the int8 first stage it replaces (one dynamically quantized linear layer): served one
    image at a time, after the network's forward pass has filled the caches with its own
    weights, the int8 layer took 187 us and these two float32 products 74 us (this project's
    AMD EPYC, one thread, interleaved with forward passes); and they run on any device. The
    int8 stage had replaced a bfloat16 one, which this CPU emulates (316 us warm). Exactness
    (the k-th cosine within 1e-5 of the one-pass float32 search): on the default model served
    ``static-int8``, its test split and both benches' OOD sets (31,997 images), with
    :func:`knn_candidates`' 96 candidates, every image at ``dim`` 64, all but 6 at 48, all but
    296 at 32. Not taken: a third stage (16-32 directions for all, 64 for the few hundred
    best, then float32) was slower and less exact; fewer directions read fewer bytes but need
    more candidates.
    """

    def __init__(self, neighbours: Tensor, dim: int = 64) -> None:
        super().__init__()
        bank = neighbours.float()
        gram = bank.double().T @ bank.double()  # [D, D]
        basis = torch.linalg.eigh(gram).eigenvectors[:, -dim:].to(bank.dtype)  # [D, dim]
        self.register_buffer("basis", basis.contiguous())
        self.register_buffer("projected_t", (bank @ basis).T.contiguous())  # [dim, N]

    def forward(self, z: Tensor) -> Tensor:
        """``[B, D]`` features -> ``[B, N]`` approximate products with every neighbour."""
        return (z @ self.basis) @ self.projected_t


def min_mahalanobis(
    features: Tensor, means: Tensor, precision: Tensor, mean_quad: Tensor | None = None
) -> Tensor:
    """``[B]`` smallest squared Mahalanobis distance of ``[B, D]`` features to ``[K, D]`` means.

    Expanded as ``z'Pz - 2 m'Pz + m'Pm`` (one product for every mean), with features and means
    centred on the means' centroid first: the terms are then of the distances' size, not of the
    features' (uncentred, float32 loses the difference of terms 10^5 large in steps of 1/16).

    ``mean_quad``: the centred means' own ``[K]`` quadratic forms
    (:func:`mean_quadratic_forms`) when kept from an earlier call, else computed.
    """
    centre = means.mean(0)
    z = features - centre
    fp = z @ precision
    quad = (fp * z).sum(1, keepdim=True)  # [B, 1]
    cross = fp @ (means - centre).T  # [B, K]
    if mean_quad is None:
        mean_quad = mean_quadratic_forms(means, precision)
    return (quad - 2 * cross + mean_quad).min(dim=1).values.clamp_min(0)


def mean_quadratic_forms(means: Tensor, precision: Tensor) -> Tensor:
    """``[K]`` ``m'Pm`` of each of ``[K, D]`` means: what every distance to them adds.

    The means are centred on their centroid first, as :func:`min_mahalanobis` centres them.
    """
    centred = means - means.mean(0)
    return ((centred @ precision) * centred).sum(1)
