"""What decides a GAN training run: mode, loss, architecture, schedule, devices, checkpoints."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.gan.networks import GanArchitecture
from models.gan.triple_config import TripleConfig


class GanTrainConfig(BaseModel):
    """Everything that decides a GAN training run (``gan:`` in the pipeline YAML)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["unsupervised", "semi-supervised", "triple"] = "unsupervised"
    loss: Literal["bce", "hinge"] = "bce"
    architecture: GanArchitecture = Field(default_factory=GanArchitecture)
    steps: int = Field(2000, ge=1, description="discriminator+generator updates")
    batch_size: int = Field(128, ge=2)
    lr_d: float = Field(2e-4, gt=0)
    lr_g: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    label_fraction: float = Field(
        0.1, gt=0, le=1, description="semi-supervised: share of train labels D may use"
    )
    labelled_batch_size: int = Field(64, ge=1, description="semi-supervised labelled batch")
    seed: int = 0
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    bf16: bool | None = Field(None, description="bf16 autocast; default: on CUDA only")
    channels_last: bool | None = Field(None, description="default: on CUDA only (measured)")
    compile: bool = Field(False, description="torch.compile both networks")
    num_threads: int | None = Field(None, description="CPU intra-op threads; default all cores")
    checkpoint_every: int = Field(500, ge=1)
    log_every: int = Field(50, ge=1)
    sample_every: int = Field(500, ge=1)
    progress: bool = True
    triple: TripleConfig | None = Field(
        None, description="mode triple: the game's weights and warm-ups (default: TripleConfig())"
    )

    @model_validator(mode="after")
    def _triple_section_needs_triple_mode(self) -> GanTrainConfig:
        if self.triple is not None and self.mode != "triple":
            raise ValueError(
                f"gan.triple is set but gan.mode is {self.mode!r}: set gan.mode: triple, or "
                "remove the gan.triple section"
            )
        return self

    def for_data(self, image_shape: tuple[int, int, int], num_classes: int) -> GanTrainConfig:
        """This config with the architecture fitted to the data.

        Image size and channels follow the data; in semi-supervised mode the discriminator gets
        one logit per class; in triple mode the game's section gets its defaults if absent.
        """
        h, _, c = image_shape
        update: dict[str, int] = {"image_size": h, "channels": c}
        if self.mode == "semi-supervised":
            update["num_classes"] = num_classes
        # validated again, so a size or channel count the networks do not support fails here
        arch = GanArchitecture(**(self.architecture.model_dump() | update))
        fitted: dict[str, object] = {"architecture": arch}
        if self.mode == "triple" and self.triple is None:
            fitted["triple"] = TripleConfig()
        return self.model_copy(update=fitted)

    def run_key(self, data_hash: str) -> str:
        """Identity of a run: what must match for a checkpoint to be resumed."""
        # Only GanTrainConfig's own fields that change the numbers (subclasses add step options).
        speed_only = {"device", "compile", "progress", "num_threads", "log_every", "sample_every"}
        decisive = self.model_dump(include=set(GanTrainConfig.model_fields) - speed_only)
        if decisive.get("triple") is None:
            decisive.pop("triple", None)  # the other modes keep the keys they always had
        blob = json.dumps({"config": decisive, "data": data_hash}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
