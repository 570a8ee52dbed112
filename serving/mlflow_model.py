"""MLflow "models from code" entry: the file MLflow runs to get the pyfunc model (no pickle)."""

from mlflow.models import set_model

from serving.pyfunc_model import HierganPyfunc

set_model(HierganPyfunc())
