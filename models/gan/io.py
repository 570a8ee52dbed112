"""A trained GAN as an artifact: safetensors weights plus a JSON description, no pickle."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from models.gan.conditional import ConditionalGenerator, ProjectionDiscriminator
from models.gan.networks import Discriminator, GanArchitecture, Generator
from models.tree.hierarchy import Hierarchy

GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
INFO_FILE = "gan.json"
SAMPLES_FILE = "samples.png"


@dataclass
class TrainedGan:
    """Weights of both networks, their architecture, and what the run measured.

    Attributes:
        architecture: rebuilds the networks.
        generator_state: generator ``state_dict`` (CPU tensors).
        discriminator_state: discriminator ``state_dict`` (CPU tensors).
        info: JSON-able facts: mode, steps, images/s, probe accuracies, dataset hash, run key.
        samples_png: the final fixed-noise sample grid.
        conditioning: for the tree-conditioned pair of the triple mode: the tree (as a dict), the
            embedding kind and G's embedding width; None for the unconditional modes.
    """

    architecture: GanArchitecture
    generator_state: dict[str, Tensor]
    discriminator_state: dict[str, Tensor]
    info: dict[str, Any] = field(default_factory=dict)
    samples_png: bytes = b""
    conditioning: dict[str, Any] | None = None

    @classmethod
    def from_networks(
        cls,
        generator: Generator,
        discriminator: Discriminator,
        info: dict[str, Any],
        samples_png: bytes = b"",
    ) -> TrainedGan:
        """Snapshot two networks (copied to CPU)."""
        return cls(
            architecture=discriminator.arch,
            generator_state=_cpu_state(generator),
            discriminator_state=_cpu_state(discriminator),
            info=info,
            samples_png=samples_png,
        )

    @classmethod
    def from_conditional(
        cls,
        generator: ConditionalGenerator,
        discriminator: ProjectionDiscriminator,
        tree: Hierarchy,
        info: dict[str, Any],
        samples_png: bytes = b"",
    ) -> TrainedGan:
        """Snapshot the triple mode's tree-conditioned pair (copied to CPU)."""
        return cls(
            architecture=generator.arch,
            generator_state=_cpu_state(generator),
            discriminator_state=_cpu_state(discriminator),
            info=info,
            samples_png=samples_png,
            conditioning={
                "tree": tree.to_dict(),
                "hierarchical": generator.embedding.hierarchical,
                "embed_dim": int(generator.embedding.weight.shape[1]),
                "embed_input": generator.embed_input,
            },
        )

    def conditional_generator(self) -> ConditionalGenerator:
        """The tree-conditioned generator with these weights (CPU, eval mode)."""
        if self.conditioning is None:
            raise ValueError("this GAN is unconditional (mode unsupervised/semi-supervised)")
        c = self.conditioning
        tree = Hierarchy.from_dict(c["tree"])
        # artifacts saved before ``embed_input`` existed fed the embedding to the first layer
        embed_input = bool(c.get("embed_input", True))
        net = ConditionalGenerator(
            self.architecture, tree, c["embed_dim"], c["hierarchical"], embed_input
        )
        net.load_state_dict(self.generator_state)
        return net.eval()

    def generator(self) -> Generator:
        """A generator with these weights (CPU, eval mode)."""
        if self.conditioning is not None:
            raise ValueError("this GAN is tree-conditioned: use conditional_generator()")
        net = Generator(self.architecture)
        net.load_state_dict(self.generator_state)
        return net.eval()

    def discriminator(self) -> Discriminator:
        """A discriminator with these weights (CPU, eval mode)."""
        if self.conditioning is not None:
            raise ValueError("this GAN is tree-conditioned: its D is a projection discriminator")
        net = Discriminator(self.architecture)
        net.load_state_dict(self.discriminator_state)
        return net.eval()

    def save(self, directory: str | Path) -> None:
        """Write the safetensors files, the JSON description and the sample grid."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.generator_state, str(directory / GENERATOR_FILE))
        save_file(self.discriminator_state, str(directory / DISCRIMINATOR_FILE))
        meta = {
            "architecture": self.architecture.model_dump(),
            "info": self.info,
            "conditioning": self.conditioning,
        }
        (directory / INFO_FILE).write_text(json.dumps(meta, indent=1, default=str))
        if self.samples_png:
            (directory / SAMPLES_FILE).write_bytes(self.samples_png)

    @classmethod
    def load(cls, directory: str | Path) -> TrainedGan:
        """Inverse of :meth:`save` (safetensors: loading runs no code)."""
        directory = Path(directory)
        meta = json.loads((directory / INFO_FILE).read_text())
        samples = directory / SAMPLES_FILE
        return cls(
            architecture=GanArchitecture(**meta["architecture"]),
            generator_state=load_file(str(directory / GENERATOR_FILE)),
            discriminator_state=load_file(str(directory / DISCRIMINATOR_FILE)),
            info=meta.get("info", {}),
            samples_png=samples.read_bytes() if samples.exists() else b"",
            conditioning=meta.get("conditioning"),
        )


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    # safetensors wants contiguous tensors that share no memory
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
