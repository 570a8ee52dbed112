"""Training stage: GAN then classifier, or the Triple-GAN game; calibration; the OOD guard."""

from steps.training.calibrate_classifier import calibrate_classifier
from steps.training.fit_hierarchical_classifier import fit_hierarchical_classifier
from steps.training.fit_ood_guard import fit_ood_guard
from steps.training.play_triple_game import play_triple_game
from steps.training.pretrain_gan import pretrain_gan

__all__ = [
    "pretrain_gan",
    "fit_hierarchical_classifier",
    "calibrate_classifier",
    "fit_ood_guard",
    "play_triple_game",
]
