"""The HTTP service: one BentoML service class serving a calibrated hierarchical classifier.

Endpoints (all POST, JSON answers):
  /classify        image files (multipart field ``images``, PNG/JPEG/WebP/..., any size or mode)
  /classify_array  uint8 arrays ``[N, H, W(, C)]`` as JSON or as ``numpy.save`` output
                   (``Content-Type: application/x-npy``), batched across requests
  /model_info      which model, its tree, its preprocessing and the input limits
BentoML adds /livez, /readyz, /healthz and /metrics. Bad input answers 4xx with ``{"error": ...}``.
Every per-image answer carries ``"ood": {"score", "threshold", "is_ood"}`` (``null`` for a model
without OOD statistics); ``ood.action: reject`` answers such images with an error and a 422
(serving/ood.py).

Run: ``bentoml serve serving.service:HierganService`` (binds 127.0.0.1:3000 by default) with
``HIERGAN_MODEL_DIR`` set to a TrainedClassifier directory, or from a bento built by the train
pipeline (``make serve`` serves the registry's champion).
"""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.exceptions import BadInput
from pydantic import AfterValidator, Field

from serving.config import (
    BENTO_MODEL_ENV,
    BENTO_MODEL_NAME,
    MODEL_DIR_ENV,
    ServiceConfig,
    load_service_config,
)
from serving.fast_path import SERVING, FastPath
from serving.limits import BodySizeLimit
from serving.ood import RejectedArrayStatus, check_guard, reject_unusual, rejected_errors

logger = logging.getLogger(__name__)

# Read at import because BentoML's decorators take the batching settings as arguments.
CONFIG = load_service_config()
# The expected image shape is known once the model is loaded (in __init__, before any request);
# the array validator below reads it so that a wrong shape is refused per request, before
# adaptive batching would stack it with other clients' arrays.
_EXPECTED_SHAPE: dict[str, tuple[int, int, int]] = {}


def _checked_array(images: np.ndarray) -> np.ndarray:
    from models.classifier.prediction import InputShapeError, Predictor

    shape = _EXPECTED_SHAPE.get("shape")
    if shape is None:
        raise ValueError("the model is not loaded yet")
    if np.asarray(images).ndim >= 1 and len(images) > CONFIG.limits.max_images:
        raise ValueError(
            f"{len(images)} images in one call, over the limit of {CONFIG.limits.max_images}"
        )
    try:
        return Predictor.check_shape(images, shape)
    except InputShapeError as err:
        raise ValueError(str(err)) from None


ImageArray = Annotated[np.ndarray, AfterValidator(_checked_array)]
CLASSIFY_ROUTES = ["/classify", "/classify_array"]


def tracing_settings(config: ServiceConfig) -> dict[str, Any]:
    """BentoML's tracing settings: the classify routes skip its middleware unless asked.

    Why: BentoML keeps no span until a team configures tracing (its sample rate defaults to 0),
    yet its OpenTelemetry middleware builds and discards a span for every request; on 2 cores
    that cost ~0.4 ms of a single-image /classify (p50 3.54 -> 3.17 ms, 8 interleaved rounds,
    ``bench/serve_load.py``'s client). ``trace_classify: true`` puts the routes back in.
    """
    return {} if config.trace_classify else {"excluded_urls": CLASSIFY_ROUTES}


@bentoml.service(
    name="hiergan_service",
    http={"host": "127.0.0.1", "port": 3000},
    workers=CONFIG.workers,
    traffic={"timeout": 30, "max_concurrency": 512},
    logging={"access": {"enabled": CONFIG.access_log}},
    tracing=tracing_settings(CONFIG),
)
class HierganService:
    """Hierarchical classification over HTTP: the path through the tree, per-level probabilities."""

    def __init__(self) -> None:
        import torch
        from threadpoolctl import threadpool_limits

        from models.classifier.io import TrainedClassifier
        from models.ood import GuardedPredictor
        from models.runtime.device import resolve_device

        threads = CONFIG.threads_per_worker()
        torch.set_num_threads(threads)
        # NumPy's BLAS too (the guard's products): OpenBLAS keeps a thread per core in every
        # worker, whose spinning beside the other workers' threads cut 32 single-image clients
        # from 990 to 300 img/s and doubled the sequential p99 (bench/serve_load.py, 2 cores)
        threadpool_limits(limits=threads, user_api="blas")
        self.device = resolve_device("auto")
        directory, self.model_source = self._model_location()
        classifier = TrainedClassifier.load(directory)
        self.predictor = GuardedPredictor(classifier, self.device, self._quantization())
        self.ood = CONFIG.ood
        check_guard(self.predictor.has_guard, self.ood, self.model_source)
        _EXPECTED_SHAPE["shape"] = self.predictor.image_shape
        self.limits = CONFIG.limits
        self.max_batch_size = CONFIG.batching.max_batch_size
        self.batch_threads = CONFIG.batching.threads
        self.request_log = self._request_log()
        # warm-up passes: the first requests should not pay for lazy initialisation
        for n in (1, 8, self.max_batch_size):
            self.predictor.predict(np.zeros((n, *self.predictor.image_shape), np.uint8))
        SERVING["service"] = self  # the fast path's handle on this worker's model
        # Everything loaded so far (torch, BentoML, the model) lives for the worker's lifetime:
        # moved out of the collector's generations, a full collection no longer walks it. JSON
        # requests allocate many small lists; without this, 32 single-image JSON clients saw
        # p99 251-264 ms (full collections), with it 71 ms (bench/serve_load.py, 2 cores).
        gc.freeze()
        # One image as JSON is 813 nested lists, alive together while the body is parsed: with
        # Python's threshold of 700 a collection runs inside nearly every request (the parse's
        # mean CPU time was 2-4x its median). service.yaml raises it (README, Benchmarks).
        gc.set_threshold(CONFIG.gc_gen0_threshold, *gc.get_threshold()[1:])
        logger.info(
            "hiergan model %s loaded on %s, quantization %s (%d leaves, levels %s)",
            self.model_source,
            self.device,
            self.predictor.quantization,
            classifier.tree.num_leaves,
            list(classifier.tree.level_names),
        )

    def _quantization(self) -> str:
        """The config's quantization; on a GPU int8 does not apply (float32, with a warning)."""
        if CONFIG.quantization != "none" and self.device.type != "cpu":
            logger.warning(
                "quantization %s runs on the CPU only: serving float32 on %s",
                CONFIG.quantization,
                self.device,
            )
            return "none"
        return CONFIG.quantization

    @staticmethod
    def _model_location() -> tuple[Path, str]:
        if directory := os.environ.get(MODEL_DIR_ENV):
            return Path(directory), f"dir:{directory}"
        tag = os.environ.get(BENTO_MODEL_ENV, f"{BENTO_MODEL_NAME}:latest")
        model = bentoml.models.get(tag)
        return Path(model.path), f"bentoml:{model.tag}"

    @staticmethod
    def _request_log() -> Any:
        from serving.request_log import RequestLog

        request_log = RequestLog.from_config(CONFIG.request_log)
        if request_log is not None:
            logger.info("recording a sample of requests under %s", request_log.directory)
        return request_log

    @bentoml.on_shutdown
    def flush_request_log(self) -> None:
        """Write the request log's partial shard before the worker exits."""
        if getattr(self, "request_log", None) is not None:
            self.request_log.flush()

    def __is_ready__(self) -> bool:
        return getattr(self, "predictor", None) is not None

    def answer(self, images: np.ndarray, top_k: int) -> list[dict[str, Any]]:
        """Answers for checked uint8 images: the one batched pass both request paths use."""
        return self._answer(images, top_k)

    def _answer(
        self, images: np.ndarray, top_k: int, names: list[str] | None = None
    ) -> list[dict[str, Any]]:
        answers = self.predictor.answer(images, top_k)  # one pass: prediction and OOD verdict
        for name, answer in zip(names or [], answers, strict=False):
            answer["input"] = name
        if self.request_log is not None:
            self.request_log.record(images, answers)
        if self.ood.action == "reject":
            answers = reject_unusual(answers, names)
        return answers

    @bentoml.api(route="/classify")
    def classify(
        self,
        images: Annotated[list[Path], Field(min_length=1)],
        ctx: bentoml.Context,
        top_k: int = 3,
    ) -> dict[str, Any]:
        """Classify image files; answers per image, in the order sent."""
        try:
            predictions = self._classify_files(images, top_k)
        except BadInput as err:
            # answered here rather than raised: BentoML 1.4 wraps a raised error's JSON in a list
            logger.info("refused /classify request: %s", err)
            ctx.response.status_code = 400
            return {"error": str(err)}
        if errors := rejected_errors(predictions):  # ood.action: reject
            ctx.response.status_code = 422
            return {"error": "; ".join(errors), "predictions": predictions}
        return {"predictions": predictions}

    def _classify_files(self, images: list[Path], top_k: int) -> list[dict[str, Any]]:
        from models.data.images import ImageDecodeError, decode_image

        if not 1 <= top_k <= self.limits.max_top_k:
            raise BadInput(f"top_k must be between 1 and {self.limits.max_top_k}, got {top_k}")
        if len(images) > self.limits.max_images:
            raise BadInput(f"{len(images)} files, over the limit of {self.limits.max_images}")
        size, _, channels = self.predictor.image_shape
        decoded, names = [], []
        for i, path in enumerate(images):
            name = f"images[{i}]"
            n_bytes = path.stat().st_size
            if n_bytes > self.limits.max_file_bytes:
                raise BadInput(
                    f"{name}: {n_bytes} bytes, over the limit of {self.limits.max_file_bytes}"
                )
            try:
                decoded.append(
                    decode_image(path, size, channels, max_pixels=self.limits.max_pixels)
                )
            except ImageDecodeError as err:
                raise BadInput(f"{name}: {err}") from None
            names.append(name)
        return self._answer(np.stack(decoded), top_k, names)

    @bentoml.api(
        route="/classify_array",
        batchable=True,
        batch_dim=0,
        max_batch_size=CONFIG.batching.max_batch_size,
        max_latency_ms=CONFIG.batching.max_latency_ms,
    )
    def classify_array(self, images: ImageArray) -> list[dict[str, Any]]:
        """Classify uint8 arrays ``[N, H, W, C]``; one answer per image (top-3 leaves)."""
        return self._answer(images, 3)

    def _ood_info(self) -> dict[str, Any] | None:
        guard = self.predictor.guard
        if guard is None:
            return None
        pixels = guard.pixel_gaussian  # the complexity term's setting, where the guard has one
        return {
            "action": self.ood.action,
            "scorer": guard.scorer,
            "parts": list(guard.parts),
            "threshold": self.predictor.threshold,  # the served runtime's
            "float32_threshold": guard.threshold,
            "pixels": None
            if pixels is None
            else {"density": pixels.density, "compressor": pixels.compressor},
        }

    @bentoml.api(route="/model_info")
    def model_info(self) -> dict[str, Any]:
        """The model being served, its tree, its preprocessing and the input limits."""
        classifier = self.predictor.classifier
        return {
            "model": self.model_source,
            "levels": list(classifier.tree.level_names),
            "leaves": list(classifier.tree.leaves),
            "preprocessing": classifier.preprocessing,
            "quantization": self.predictor.quantization,
            "temperatures": classifier.temperatures,
            "calibration": classifier.calibration_methods,
            "ood": self._ood_info(),
            "info": classifier.info,
            "limits": self.limits.model_dump(),
        }


HierganService.add_asgi_middleware(
    BodySizeLimit,
    max_bytes=CONFIG.limits.max_request_bytes,
    form_fields={"/classify": ({"images"}, {"top_k"})},
)
# inside the size limit: well-formed classify requests skip BentoML's parsing and batching
HierganService.add_asgi_middleware(FastPath, enabled=CONFIG.fast_path)
if CONFIG.ood.action == "reject":  # the batched route's 422 and image names (serving/ood.py)
    HierganService.add_asgi_middleware(RejectedArrayStatus, path="/classify_array")
