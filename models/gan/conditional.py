"""Class-conditional networks over a label tree: a generator and a projection discriminator.

Both are conditioned on a *leaf* through :class:`TreeEmbedding`: with ``hierarchical=True`` a
leaf's embedding is the sum of the embeddings of the nodes on its path (``Clothes + Tops +
Shirt``), so siblings share what their parent has in common and a rarely seen leaf starts from
its parent's embedding; with ``hierarchical=False`` it is one free vector per leaf (the usual
cGAN, kept for the ablation).

- :class:`ConditionalGenerator` is the DCGAN generator of :mod:`.networks` with conditional
  batch norm in every block (gain and bias are linear in the embedding, as BigGAN's shared
  embedding); ``z`` alone is its input. With the embedding concatenated to ``z`` as well
  (``embed_input=True``, the earlier design) it learnt to ignore ``z``: one image per leaf.
- :class:`ProjectionDiscriminator` (Miyato & Koyama 2018) is the DCGAN discriminator's trunk with
  ``D(x, y) = psi(phi(x)) + <e(y), phi(x)>``; ``phi`` is the last trunk map summed over space.
  :meth:`~ProjectionDiscriminator.all_leaves` scores every leaf at once (one matrix product),
  which is what Triple-GAN's integrated classifier term needs, and ``softmax_y <e(y), phi(x)>``
  is a classifier of its own (the unconditional term cancels).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from models.gan.networks import BASE_SIZE, Discriminator, GanArchitecture, dcgan_init
from models.tree.hierarchy import Hierarchy


class TreeEmbedding(nn.Module):
    """``leaf [B] -> [B, dim]``: the sum of the node embeddings on the leaf's path (or the leaf's).

    Args:
        tree: the label tree.
        dim: embedding width.
        hierarchical: sum over the path (True) or the leaf's own row only (False).
    """

    def __init__(self, tree: Hierarchy, dim: int, hierarchical: bool = True) -> None:
        super().__init__()
        self.hierarchical = hierarchical
        offsets = np.cumsum([0, *tree.level_sizes[:-1]])
        # [n_leaves, depth]: row of the node table for each level's node on the leaf's path
        rows = torch.as_tensor(tree.leaf_paths + offsets[None, :], dtype=torch.long)
        self.register_buffer("path_rows", rows if hierarchical else rows[:, -1:], persistent=False)
        self.num_leaves = tree.num_leaves
        n_rows = int(sum(tree.level_sizes)) if hierarchical else tree.num_leaves
        if not hierarchical:
            self.path_rows = self.path_rows - int(offsets[-1])
        # a sum of `depth` independent rows has depth x the variance of one: scale them down
        std = 1.0 / math.sqrt(self.path_rows.shape[1])
        self.weight = nn.Parameter(torch.randn(n_rows, dim) * std)

    def forward(self, leaves: Tensor) -> Tensor:
        """Embeddings of ``leaves`` (``[B]`` leaf indices)."""
        return self.weight[self.path_rows[leaves]].sum(dim=1)

    def all_leaves(self) -> Tensor:
        """``[n_leaves, dim]``: every leaf's embedding, in label order."""
        return self.weight[self.path_rows].sum(dim=1)


class ConditionalBatchNorm(nn.Module):
    """Batch norm without affine of its own; gain ``1 + W_g e`` and bias ``W_b e`` from ``e``."""

    def __init__(self, channels: int, embed_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(embed_dim, channels, bias=False)
        self.bias = nn.Linear(embed_dim, channels, bias=False)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        """Normalised ``x`` ``[B, C, H, W]`` scaled and shifted per sample by ``e`` ``[B, E]``."""
        gain = 1.0 + self.gain(e)[:, :, None, None]
        return self.bn(x) * gain + self.bias(e)[:, :, None, None]


class ConditionalGenerator(nn.Module):
    """``(z [B, latent_dim], leaf [B]) -> image [B, C, H, W]`` in [-1, 1]."""

    def __init__(
        self,
        arch: GanArchitecture,
        tree: Hierarchy,
        embed_dim: int,
        hierarchical: bool = True,
        embed_input: bool = False,
    ) -> None:
        super().__init__()
        self.arch, self.embed_input = arch, embed_input
        self.embedding = TreeEmbedding(tree, embed_dim, hierarchical)
        n, base = arch.num_upsamplings, BASE_SIZE[arch.image_size]
        width = arch.g_width * 2 ** (n - 1)
        # [B, nz (+ E), 1, 1] -> [B, width, base, base]
        n_in = arch.latent_dim + (embed_dim if embed_input else 0)
        self.convs = nn.ModuleList([nn.ConvTranspose2d(n_in, width, base, 1, 0, bias=False)])
        self.norms = nn.ModuleList([ConditionalBatchNorm(width, embed_dim)])
        for _ in range(n - 1):
            # [B, w, s, s] -> [B, w/2, 2s, 2s]
            self.convs.append(nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False))
            self.norms.append(ConditionalBatchNorm(width // 2, embed_dim))
            width //= 2
        # [B, g_width, H/2, W/2] -> [B, C, H, W]
        self.to_image = nn.ConvTranspose2d(width, arch.channels, 4, 2, 1, bias=False)
        for conv in [*self.convs, self.to_image]:  # the norms' gains start at exactly 1
            dcgan_init(conv)

    def forward(self, z: Tensor, leaves: Tensor) -> Tensor:
        """Images for latent codes ``z`` conditioned on ``leaves``."""
        e = self.embedding(leaves).to(z.dtype)
        h = (torch.cat([z, e], dim=1) if self.embed_input else z)[:, :, None, None]
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = torch.relu(norm(conv(h), e))
        return torch.tanh(self.to_image(h))


class ProjectionDiscriminator(nn.Module):
    """``(image, leaf) -> score [B]``: ``psi(phi(x)) + <e(leaf), phi(x)>``."""

    def __init__(self, arch: GanArchitecture, tree: Hierarchy, hierarchical: bool = True) -> None:
        super().__init__()
        self.arch = arch.model_copy(update={"num_classes": 0})
        body = Discriminator(self.arch)
        self.trunk = body.trunk
        self.psi = body.head  # the unconditional real/fake logit over the last map
        width = arch.d_width * 2 ** (arch.num_upsamplings - 1)
        self.embedding = TreeEmbedding(tree, width, hierarchical)
        nn.init.normal_(self.embedding.weight, 0.0, 0.02)
        if arch.spectral_norm:
            self.embedding = spectral_norm(self.embedding)

    def phi(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(last trunk map [B, F, s, s], phi [B, F])``: phi is the map summed over space."""
        h = x
        for block in self.trunk:
            h = block(h)
        return h, h.sum(dim=(2, 3))

    def forward(self, x: Tensor, leaves: Tensor) -> Tensor:
        """Scores of the pairs ``(x[i], leaves[i])``."""
        h, phi = self.phi(x)
        e = self.embedding(leaves).to(phi.dtype)
        return self.psi(h).flatten() + (e * phi).sum(dim=1)

    def all_leaves(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(scores [B, n_leaves], projections [B, n_leaves])`` for every leaf at once.

        ``projections`` alone (``<e(y), phi(x)>``) are D's own classifier logits.
        """
        h, phi = self.phi(x)
        proj = phi @ self.embedding.all_leaves().to(phi.dtype).t()
        return self.psi(h).flatten(1) + proj, proj

    def leaf_logits(self, x: Tensor) -> Tensor:
        """``[B, n_leaves]`` logits of D read as a classifier: ``softmax`` gives ``p_D(y | x)``."""
        return self.all_leaves(x)[1]


def build_conditional_gan(
    arch: GanArchitecture,
    tree: Hierarchy,
    embed_dim: int,
    hierarchical: bool,
    seed: int,
    embed_input: bool = False,
) -> tuple[ConditionalGenerator, ProjectionDiscriminator]:
    """Both conditional networks, initialised from ``seed`` alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return (
            ConditionalGenerator(arch, tree, embed_dim, hierarchical, embed_input),
            ProjectionDiscriminator(arch, tree, hierarchical),
        )
