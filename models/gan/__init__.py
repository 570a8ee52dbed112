"""The generative model: a DCGAN-family GAN whose discriminator becomes the classifier's trunk.

:mod:`.networks` holds the generator and discriminator (28/32/64 px, 1 or 3 channels),
:mod:`.losses` and :mod:`.objectives` what each mode minimises (``unsupervised``,
``semi-supervised``), :mod:`.training` the resumable loop (:class:`GanTrainer`),
:mod:`.pretrain` the pipeline's run with its linear probes, and :mod:`.io` the trained pair as
safetensors + JSON (:class:`TrainedGan`). A new mode is one objective class in ``OBJECTIVES``.
"""

from models.gan.config import GanTrainConfig
from models.gan.io import TrainedGan
from models.gan.networks import Discriminator, GanArchitecture, Generator, build_gan
from models.gan.pretrain import PretrainGanConfig, pretrain_gan, probe_table
from models.gan.training import GanResult, GanTrainer, TrainerCallback

__all__ = [
    "Discriminator",
    "GanArchitecture",
    "GanResult",
    "GanTrainConfig",
    "GanTrainer",
    "Generator",
    "PretrainGanConfig",
    "TrainedGan",
    "TrainerCallback",
    "build_gan",
    "pretrain_gan",
    "probe_table",
]
