"""hiergan pipelines: one ``@pipeline`` per module with a click ``main()``; configs in YAML."""

from models.runtime.environment import quiet_telemetry

# The pipeline modules import ZenML, MLflow and GX at import time, and those read their telemetry
# settings when they load: turning telemetry off has to happen before, here.
quiet_telemetry()
