"""What perturbs an image: evasion attacks (FGSM, PGD through ART) and common corruptions.

:class:`MergedLeafModel` is what is attacked: images in [0, 1] to merged leaf log-probabilities.
:mod:`.corruptions` holds a seeded CIFAR-10-C style grid of 14 corruptions x 5 severities, and
:class:`PGDPerturbation` plugs PGD into the classifier's training loop (adversarial training).
Robustness *measurement* built on these lives in :mod:`models.robustness`.
"""

from models.attacks.adversarial_training import PGDPerturbation
from models.attacks.config import AdversarialTrainingConfig
from models.attacks.corruptions import CORRUPTIONS, SEVERITIES, check_corruptions, corrupt
from models.attacks.evasion import (
    ATTACKS,
    MergedLeafModel,
    art_classifier,
    input_gradients_only,
    make_attack,
    predict_leaf_log_probs,
    run_attack,
)

__all__ = [
    "ATTACKS",
    "CORRUPTIONS",
    "SEVERITIES",
    "AdversarialTrainingConfig",
    "MergedLeafModel",
    "PGDPerturbation",
    "art_classifier",
    "check_corruptions",
    "corrupt",
    "input_gradients_only",
    "make_attack",
    "predict_leaf_log_probs",
    "run_attack",
]
