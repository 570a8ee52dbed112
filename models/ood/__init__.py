"""Know what the model was not trained on: out-of-distribution scores, the guard, its sets.

:func:`guarded_forward` is the classifier's forward pass that also keeps what the scorers read;
:class:`OodGuard` holds the fitted statistics (class-conditional Gaussians, the pretrained GAN
discriminator), combines components into the served score and carries the threshold;
:func:`fit_guard` fits it (train split) and sets the threshold (validation split, at
``tpr``); :class:`GuardedPredictor` answers with ``"ood"`` per image; :func:`build_ood_sets`
makes the offline OOD sets; :func:`evaluate_guard` scores them (AUROC, FPR at 95 % TPR).
"""

from models.ood.config import SCORERS, OodConfig
from models.ood.fit import (
    GuardedScores,
    discriminator_from_state,
    fit_guard,
    score_images,
    with_guard,
)
from models.ood.guard import OodGuard, scorer_parts
from models.ood.predictor import GuardedPredictor
from models.ood.scores import GuardedOutputs, guarded_forward
from models.ood.sets import SETS, build_ood_sets

__all__ = [
    "SCORERS",
    "SETS",
    "GuardedOutputs",
    "GuardedPredictor",
    "GuardedScores",
    "OodConfig",
    "OodGuard",
    "build_ood_sets",
    "discriminator_from_state",
    "fit_guard",
    "guarded_forward",
    "score_images",
    "scorer_parts",
    "with_guard",
]
