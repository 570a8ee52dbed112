"""Training jobs on one process or several: what the training steps call.

:func:`pretrain_gan_job` and :func:`fit_classifier_job` run the core's GAN pretraining and
classifier fit in this process, or, when ``distributed.world_size > 1``, as a DDP job of that
many processes (:mod:`.worker`, launched with torchrun, or by a multi-pod Kubernetes step);
:class:`JobSpec` is such a job written down.
"""

from models.jobs.run import fit_classifier_job, pretrain_gan_job
from models.jobs.spec import JobSpec

__all__ = ["JobSpec", "fit_classifier_job", "pretrain_gan_job"]
