"""The hierarchical classifier: network, training loop, the trained artifact, predictions.

:class:`HierarchicalClassifier` puts a shared neck and one head per tree level on the GAN
discriminator's trunk; :func:`fit_classifier` trains it (:class:`ClassifierTrainer` runs
:class:`Phase` s of epochs with batch :class:`Perturbation` s: augmentation, PGD; and a
:class:`BatchLoss`: the conditional NLL, TRADES); :class:`TrainedClassifier` is the artifact
(safetensors + JSON: weights, tree, calibration maps, preprocessing); :class:`Predictor`
answers batches of uint8 images as clients read them.
"""

from models.classifier.config import ClassifierConfig
from models.classifier.io import TrainedClassifier
from models.classifier.losses import BatchLoss, HierarchicalNLL, TradesLoss, conditional_nll
from models.classifier.network import HierarchicalClassifier, fine_accuracy, predict_logits
from models.classifier.prediction import InputShapeError, Predictor
from models.classifier.training import (
    ClassifierTrainer,
    FitResult,
    Perturbation,
    Phase,
    finetune_adversarially,
    fit_classifier,
)

__all__ = [
    "BatchLoss",
    "ClassifierConfig",
    "ClassifierTrainer",
    "FitResult",
    "HierarchicalClassifier",
    "HierarchicalNLL",
    "InputShapeError",
    "Perturbation",
    "Phase",
    "Predictor",
    "TradesLoss",
    "TrainedClassifier",
    "conditional_nll",
    "fine_accuracy",
    "finetune_adversarially",
    "fit_classifier",
    "predict_logits",
]
