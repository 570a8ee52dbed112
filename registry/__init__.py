"""The model registry: MLflow versions and aliases of the classifier, and the stack that hosts it.

:mod:`.versions` logs a calibrated classifier as a version of ``hiergan`` (safetensors + a
pyfunc logged from code, no pickle), loads versions, and moves the ``challenger`` and
``champion`` aliases (with a champion history for rollback); :mod:`.promotion` scores both
aliases on one test split and applies the gate's decision; :mod:`.stack` finds the active ZenML
stack's MLflow store. Below steps and serving: it imports the core, never ``pipelines``.
"""

from models.runtime.environment import quiet_telemetry

# MLflow and ZenML read their telemetry settings when they are imported, which the modules of
# this package do at their top: the settings must be in place before, here.
quiet_telemetry()
