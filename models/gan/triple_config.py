"""How the Triple-GAN game is played: ``gan.triple:`` in the pipeline YAML (``gan.mode: triple``).

Every weight, warm-up and batch of the game is here; the networks' shapes come from
``gan.architecture`` (G and D) and the ``classifier:`` section (C, the label generator, which is
the project's hierarchical classifier). Step counts are optimiser steps of C; G and D take one
step each per C step (D ``d_steps``) while the game is on.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TripleConfig(BaseModel):
    """The game's weights, warm-ups and batches (Li et al. 2017; Triple-GAN v2, Wu et al. 2019)."""

    model_config = ConfigDict(extra="forbid")

    embedding: Literal["hierarchical", "flat"] = Field(
        "hierarchical", description="label embedding of G and D: sum over the path, or per leaf"
    )
    embed_dim: int = Field(128, ge=4, description="width of G's label embedding")
    g_embed_input: bool = Field(
        False,
        description="also feed the label embedding to G's first layer beside z (the design "
        "before 2026-11-27); measured: G then ignores z, one image per leaf. False: G sees a "
        "leaf only through its conditional batch norms",
    )
    generative: bool = Field(
        True, description="False: C alone, no G or D (the study's scratch / scratch-ssl arms)"
    )
    alpha: float = Field(
        0.5, gt=0, lt=1, description="D's utility: C's pairs weigh alpha, G's pairs 1 - alpha"
    )
    adversarial_weight: float = Field(
        0.1, ge=0, description="C's loss: weight of alpha x the adversarial term on C's pairs"
    )
    adversarial_start: int = Field(500, ge=0, description="step the adversarial term ramps from")
    adversarial_ramp: int = Field(1000, ge=0, description="steps of its sigmoid ramp-up")
    rp_weight: float = Field(
        0.3, ge=0, description="R_P: weight of C's cross-entropy on G's (x, y) samples; 0: off"
    )
    rp_start: int = Field(1000, ge=0, description="R_P warm-up: off before this step")
    rp_ramp: int = Field(1000, ge=0, description="steps of R_P's sigmoid ramp-up")
    guide_weight: float = Field(
        0.0,
        ge=0,
        description="G's loss: weight of the EMA teacher's hierarchical cross-entropy on G's "
        "pairs (G draws what C calls y; not in Triple-GAN, where only D conditions G); 0: off",
    )
    guide_start: int = Field(500, ge=0, description="step the guide term ramps from")
    guide_ramp: int = Field(1000, ge=0, description="steps of its sigmoid ramp-up")
    unlabelled: Literal["pseudo-label", "mean-teacher", "entropy", "none"] = Field(
        "pseudo-label",
        description="C's unlabelled-data term, a consistency with the EMA teacher: its confident "
        "path on a weak view is C's target on a strong view (FixMatch's split); or mean-teacher "
        "MSE between two weak views (Triple-GAN v2); or entropy minimisation (v1); or none",
    )
    strong_view: Literal["shift-cutout", "randaugment"] = Field(
        "shift-cutout",
        description="the student's view in the pseudo-label term: larger shifts, a cut-out "
        "square and a contrast change; or FixMatch's RandAugment (two random operations per "
        "image, then a cut-out square)",
    )
    teacher_d_weight: float = Field(
        0.0,
        ge=0,
        le=1,
        description="the pseudo-label teacher pools D's leaf distribution on the same unlabelled "
        "images with its own, (1 - w) log p_teacher + w log p_D (the merge the study fits on val "
        "at the end, used while training); 0: the EMA teacher alone",
    )
    teacher_d_start: int = Field(2000, ge=0, description="step D joins the teacher from")
    teacher_d_ramp: int = Field(1000, ge=0, description="steps of its sigmoid ramp-up")
    unlabelled_weight: float = Field(
        1.0, ge=0, description="its weight after the ramp (mean teacher: ~10, on the summed MSE)"
    )
    confidence: float = Field(
        0.9,
        ge=0,
        le=1,
        description="the teacher's leaf probability an unlabelled image needs to be given a "
        "label (the pseudo-label term, and D's teacher-labelled real pairs)",
    )
    unlabelled_ramp: int = Field(1000, ge=0, description="steps of its sigmoid ramp-up from 0")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="EMA of C's weights (the teacher)")
    ema_decay_warmup: float = Field(0.99, ge=0, lt=1, description="EMA decay during ema_warmup")
    ema_warmup: int = Field(1000, ge=0)
    lr_warmup: int = Field(0, ge=0, description="C's learning rate: linear warm-up steps")
    labelled_batch: int = Field(64, ge=1, description="C's labelled batch (and D's real pairs)")
    unlabelled_batch: int = Field(128, ge=1, description="C's unlabelled batch (and C's pairs)")
    pseudo_real_batch: int = Field(
        64,
        ge=0,
        description="unlabelled images labelled by the EMA teacher, on D's real side (as the "
        "official v2 code); 0: labelled pairs only (v1)",
    )
    pseudo_real_start: int = Field(500, ge=0, description="step teacher-labelled pairs join D")
    d_steps: int = Field(1, ge=1, description="D updates per step")
    game_start: int = Field(0, ge=0, description="G and D start at this step (C alone before)")
    samples_per_leaf: int = Field(100, ge=1, description="G's samples per leaf for fidelity")
    fidelity_reference_steps: int = Field(
        0,
        ge=0,
        description="steps of a reference classifier trained on all train labels to judge G's "
        "samples; 0: the game's own C judges them (reported as such)",
    )
    merge_discriminator: bool = Field(
        True,
        description="fit a weight (on val) for merging D's classifier into C's; reported, and "
        "kept in the classifier's info only when it beats C alone on val",
    )

    @model_validator(mode="after")
    def _batches_fit(self) -> TripleConfig:
        if self.generative and self.adversarial_weight == 0 and self.rp_weight == 0:
            raise ValueError(
                "gan.triple: with generative=true, adversarial_weight or rp_weight must be > 0 "
                "(otherwise G and D would train without ever touching C)"
            )
        return self
