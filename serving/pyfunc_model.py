"""An MLflow pyfunc wrapper around the classifier, so ``mlflow models serve`` can serve it too.

The registered version holds the classifier directory (safetensors + JSON) as an artifact; this
class reads it in ``load_context``. It is logged as "models from code" (serving/mlflow_model.py)
so that no pickled Python object is stored in the registry.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np

CLASSIFIER_ARTIFACT = "classifier"


class HierganPyfunc(mlflow.pyfunc.PythonModel):
    """``predict(uint8 [N, H, W, C]) -> one answer per image`` (path, leaf, top-k, ood)."""

    def load_context(self, context: Any) -> None:
        """Load the classifier directory that the registered version carries."""
        from models.classifier.io import TrainedClassifier
        from models.ood import GuardedPredictor

        classifier = TrainedClassifier.load(context.artifacts[CLASSIFIER_ARTIFACT])
        self.predictor = GuardedPredictor(classifier)  # answers carry "ood", as the service's

    # No type hints on predict: MLflow would read them as the model's input schema; the logged
    # signature (uint8 [-1, H, W, C]) is the schema.
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        """Classify a batch; ``params={"top_k": k}`` chooses how many leaves to list."""
        top_k = int((params or {}).get("top_k", 3))
        return self.predictor.predict(np.asarray(model_input), top_k=top_k)
