"""How the hierarchical classifier is built and trained (``classifier:`` in the pipeline YAML)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.attacks.config import AdversarialTrainingConfig


class ClassifierConfig(BaseModel):
    """How the hierarchical classifier is built and trained (``classifier:`` in the YAML)."""

    model_config = ConfigDict(extra="forbid")

    init: Literal["gan", "scratch"] = Field("gan", description="trunk from the GAN's D or random")
    feature_pool: int = Field(4, ge=1, le=7, description="trunk blocks pooled to this size")
    hidden: int = Field(256, ge=8, description="width of the shared neck")
    dropout: float = Field(0.3, ge=0, lt=1)
    level_weights: list[float] | None = Field(None, description="loss weight per level; default 1")
    label_fraction: float = Field(1.0, gt=0, le=1, description="share of train labels used")
    epochs: int = Field(15, ge=1)
    min_steps: int = Field(
        0, ge=0, description="train at least this many steps (small label fractions: same budget)"
    )
    freeze_epochs: int = Field(1, ge=0, description="epochs with the trunk frozen, heads only")
    batch_size: int = Field(128, ge=2)
    lr: float = Field(2e-3, gt=0)
    trunk_lr_scale: float = Field(0.5, gt=0, description="trunk learning rate = lr * this")
    weight_decay: float = Field(5e-4, ge=0)
    augment: bool = Field(True, description="random shifts and horizontal flips")
    hflip: bool = True
    max_shift: int = Field(2, ge=0, le=8, description="random shift (crop of a padded image), px")
    random_erasing: float = Field(
        0.0, ge=0, le=1, description="probability of erasing a random rectangle (Zhong et al.)"
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="per level, spread over the true node's siblings"
    )
    warmup_epochs: float = Field(
        0.0, ge=0, description="linear learning-rate warm-up before the cosine decay"
    )
    ema_decay: float | None = Field(
        None, ge=0, lt=1, description="exponential moving average of the weights; off if None"
    )
    tta_flip: bool = Field(
        False, description="predict from the mean logits of the image and its mirror image"
    )
    seed: int = 0
    device: str = "auto"
    channels_last: bool = True
    bf16: bool | Literal["auto"] | None = Field(
        None,
        description="bf16 autocast of the training passes and the per-epoch validation; None: "
        "on CUDA only; auto: where the device has native bf16 (CUDA, a CPU with AVX512-BF16 or "
        "AMX)",
    )
    num_threads: int | None = None
    adversarial: AdversarialTrainingConfig | None = Field(
        None, description="PGD adversarial fine-tuning epochs after the clean ones; off if None"
    )
