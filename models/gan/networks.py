"""DCGAN-family generator and discriminator for 1- or 3-channel images of 28, 32 or 64 px.

The discriminator is also the feature extractor of the product: :meth:`Discriminator.features`
returns its pooled trunk features, on which the per-level classifiers are fitted.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

# Smallest feature map's size per image size: 28 = 7 * 2^2, 32 = 4 * 2^3, 64 = 4 * 2^4.
BASE_SIZE = {28: 7, 32: 4, 64: 4}


class GanArchitecture(BaseModel):
    """Shape of the two networks (``gan.architecture:`` in the pipeline YAML)."""

    model_config = ConfigDict(extra="forbid")

    image_size: int = Field(28, description="28, 32 or 64")
    channels: int = Field(1, description="1 or 3")
    latent_dim: int = Field(100, ge=1)
    g_width: int = Field(64, ge=4, description="generator channels at full resolution")
    d_width: int = Field(64, ge=4, description="discriminator channels at full resolution")
    spectral_norm: bool = Field(False, description="spectral norm on D (then no batch norm in D)")
    d_extra_layers: int = Field(
        0, ge=0, le=4, description="3x3 stride-1 conv layers after each of D's strided convs"
    )
    feature_pool: int = Field(
        2, ge=1, le=7, description="features: each block average-pooled to this size, concatenated"
    )
    num_classes: int = Field(
        0, ge=0, description="0: one real/fake logit; K: K class logits (semi-supervised)"
    )

    def model_post_init(self, __context: object) -> None:
        """Reject sizes and channel counts the networks are not built for."""
        if self.image_size not in BASE_SIZE:
            raise ValueError(
                f"image_size must be one of {sorted(BASE_SIZE)}, got {self.image_size}"
            )
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")

    @property
    def num_upsamplings(self) -> int:
        """Stride-2 stages between the base map and the image."""
        return int(math.log2(self.image_size // BASE_SIZE[self.image_size]))


class Generator(nn.Module):
    """``z [B, latent_dim] -> image [B, C, H, W]`` in [-1, 1] (pytorch/examples' DCGAN shape)."""

    def __init__(self, arch: GanArchitecture) -> None:
        super().__init__()
        self.arch = arch
        n, base = arch.num_upsamplings, BASE_SIZE[arch.image_size]
        width = arch.g_width * 2 ** (n - 1)
        layers: list[nn.Module] = [
            # [B, nz, 1, 1] -> [B, width, base, base]
            nn.ConvTranspose2d(arch.latent_dim, width, base, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
        ]
        for _ in range(n - 1):
            # [B, w, s, s] -> [B, w/2, 2s, 2s]
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(True),
            ]
            width //= 2
        # [B, g_width, H/2, W/2] -> [B, C, H, W]
        layers += [nn.ConvTranspose2d(width, arch.channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: Tensor) -> Tensor:
        """Map latent codes to images."""
        return self.net[1:](self.base_map(z))

    def base_map(self, z: Tensor) -> Tensor:
        """The first layer, ``[B, nz] -> [B, width, base, base]``, as the matrix product it is.

        A transposed convolution of a 1x1 input is ``z @ W`` with ``W`` viewed as
        ``[nz, width * base * base]``; written so it runs ~1.6x faster on CPU than the
        convolution kernel (``bench/gan_throughput.py``), with the same weights and state dict.
        Channels-last weights give a channels-last output, as the convolution would.
        """
        weight = self.net[0].weight  # [nz, width, base, base]
        nz, width, base, _ = weight.shape
        z = z.reshape(z.shape[0], nz)
        if weight.is_contiguous(memory_format=torch.channels_last):
            flat = weight.permute(0, 2, 3, 1).reshape(nz, -1)  # a view: [nz, base*base*width]
            return (z @ flat).view(-1, base, base, width).permute(0, 3, 1, 2)
        return (z @ weight.reshape(nz, -1)).view(-1, width, base, base)


class Discriminator(nn.Module):
    """``image [B, C, H, W] -> logits [B, max(1, num_classes)]``, with a feature trunk."""

    def __init__(self, arch: GanArchitecture) -> None:
        super().__init__()
        self.arch = arch
        n, base = arch.num_upsamplings, BASE_SIZE[arch.image_size]
        sn = spectral_norm if arch.spectral_norm else (lambda m: m)
        width = arch.d_width
        # [B, C, H, W] -> [B, d_width, H/2, W/2]; no norm on the first layer (DCGAN)
        blocks = [
            nn.Sequential(
                sn(nn.Conv2d(arch.channels, width, 4, 2, 1, bias=arch.spectral_norm)),
                nn.LeakyReLU(0.2, inplace=True),
                *extra_layers(width, arch),
            )
        ]
        widths = [width]
        for _ in range(n - 1):
            # [B, w, s, s] -> [B, 2w, s/2, s/2]
            layers: list[nn.Module] = [
                sn(nn.Conv2d(width, width * 2, 4, 2, 1, bias=arch.spectral_norm))
            ]
            if not arch.spectral_norm:
                layers.append(nn.BatchNorm2d(width * 2))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            blocks.append(nn.Sequential(*layers, *extra_layers(width * 2, arch)))
            width *= 2
            widths.append(width)
        self.trunk = nn.ModuleList(blocks)  # last block -> [B, width, base, base]
        # features: every block's activations average-pooled to feature_pool x feature_pool and
        # concatenated, the multi-scale readout of Radford et al. (2016)
        self.feature_dim = sum(widths) * arch.feature_pool**2
        # [B, width, base, base] -> [B, out, 1, 1]
        self.head = sn(nn.Conv2d(width, max(1, arch.num_classes), base, 1, 0))
        self.apply(dcgan_init)

    def trunk_outputs(self, x: Tensor) -> list[Tensor]:
        """Activations after each trunk block, from full resolution down to the base map."""
        outs = []
        for block in self.trunk:
            x = block(x)
            outs.append(x)
        return outs

    def forward(self, x: Tensor) -> Tensor:
        """Logits: ``[B]`` for one real/fake output, else ``[B, num_classes]``."""
        return self.logits_from_trunk(self.trunk_outputs(x)[-1])

    def logits_from_trunk(self, h: Tensor) -> Tensor:
        """Logits from the last trunk block's activations."""
        out = self.head(h).flatten(1)
        return out.squeeze(1) if self.arch.num_classes == 0 else out

    def pool(self, outs: list[Tensor]) -> Tensor:
        """``[[B, F_i, s_i, s_i]] -> [B, feature_dim]``: pooled and concatenated."""
        p = self.arch.feature_pool
        return torch.cat([average_pool(h, p).flatten(1) for h in outs], dim=1)

    def features(self, x: Tensor) -> Tensor:
        """Pooled trunk features ``[B, feature_dim]``: what the classifiers are fitted on."""
        return self.pool(self.trunk_outputs(x))


def average_pool(h: Tensor, size: int) -> Tensor:
    """``adaptive_avg_pool2d(h, size)``, with a map already ``size`` x ``size`` passed through.

    The pass-through is a 1x1 average pool: the same numbers, and gradients in the input's
    memory format, without the adaptive kernel's slow channels-last backward (measured ~4x the
    whole classifier step's pooling on CPU for the default ``feature_pool: 7`` of a 28 px trunk).
    """
    if h.shape[-2:] == (size, size):
        return F.avg_pool2d(h, 1)
    return F.adaptive_avg_pool2d(h, size)


def extra_layers(width: int, arch: GanArchitecture) -> list[nn.Module]:
    """``arch.d_extra_layers`` 3x3 stride-1 conv blocks at one resolution (a deeper trunk).

    As the "extra layers" of DCGAN-family discriminators (Arjovsky et al.'s WGAN code): the map's
    size is kept, the classifier's trunk gets deeper, the GAN still pretrains all of it.
    """
    sn = spectral_norm if arch.spectral_norm else (lambda m: m)
    layers: list[nn.Module] = []
    for _ in range(arch.d_extra_layers):
        # [B, w, s, s] -> [B, w, s, s]
        layers.append(sn(nn.Conv2d(width, width, 3, 1, 1, bias=arch.spectral_norm)))
        if not arch.spectral_norm:
            layers.append(nn.BatchNorm2d(width))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


def dcgan_init(module: nn.Module) -> None:
    """Weights from N(0, 0.02), batch-norm scales from N(1, 0.02) (Radford et al. 2016)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        weight = getattr(module, "parametrizations", None)
        target = module.parametrizations.weight.original if weight is not None else module.weight
        nn.init.normal_(target, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build_gan(arch: GanArchitecture, seed: int) -> tuple[Generator, Discriminator]:
    """Both networks, initialised from ``seed`` alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Generator(arch), Discriminator(arch)
