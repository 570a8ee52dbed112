"""Training stage: pretrain a GAN and fit the classifier, or play the Triple-GAN game; calibrate."""

from steps.training.calibrate_classifier import calibrate_classifier
from steps.training.fit_hierarchical_classifier import fit_hierarchical_classifier
from steps.training.play_triple_game import play_triple_game
from steps.training.pretrain_gan import pretrain_gan

__all__ = [
    "pretrain_gan",
    "fit_hierarchical_classifier",
    "calibrate_classifier",
    "play_triple_game",
]
