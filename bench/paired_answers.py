"""Paired in-process timing of a served one-image answer under two settings of its guard.

The served model's ``static-int8`` predictor, one torch and one BLAS thread (as a service
worker), answers each image twice in alternating order, once per setting (``switch(True)``:
the new one), so that the host's slow and fast minutes fall on both alike; the median of the
pairs' differences is the setting's saving. The OOD scores of both are kept: a setting meant
to change no number can show that it does not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


def served_predictor(model_dir: str) -> Any:
    """The guarded predictor a service worker builds for ``model_dir`` (one thread)."""
    import torch
    from threadpoolctl import threadpool_limits

    from models.classifier.io import TrainedClassifier
    from models.ood import GuardedPredictor

    torch.set_num_threads(1)
    threadpool_limits(1, user_api="blas")
    predictor = GuardedPredictor(TrainedClassifier.load(model_dir), "cpu", "static-int8")
    if predictor._served is None or predictor._served._compiled is None:
        raise SystemExit(f"{model_dir}: its guard is not served by the compiled score")
    return predictor


def paired_answers(
    predictor: Any, images: np.ndarray, switch: Callable[[bool], None], repeats: int = 3
) -> dict[str, Any]:
    """Microseconds of one-image answers with ``switch(True)`` (new) and ``switch(False)``."""
    times: dict[bool, list[int]] = {True: [], False: []}
    scores: dict[bool, list[float]] = {True: [], False: []}
    for image in images[:50]:
        predictor.answer(image[None])
    for rep in range(repeats):
        for i, image in enumerate(images):
            for new in (True, False)[:: 1 if (i + rep) % 2 else -1]:
                switch(new)
                start = time.perf_counter_ns()
                answer = predictor.answer(image[None])
                times[new].append(time.perf_counter_ns() - start)
                scores[new].append(answer[0]["ood"]["score"])
    switch(True)
    saved = np.array(times[False]) - np.array(times[True])
    return {
        "answers": len(saved),
        "new_us": round(float(np.median(times[True])) / 1e3, 1),
        "old_us": round(float(np.median(times[False])) / 1e3, 1),
        "saved_us_median": round(float(np.median(saved)) / 1e3, 1),
        "saved_us_iqr": [round(float(q) / 1e3, 1) for q in np.percentile(saved, [25, 75])],
        "scores_that_differ": int(np.sum(np.array(scores[True]) != np.array(scores[False]))),
    }


def answers_section(answers: dict[str, Any], new: str, old: str) -> str:
    """The markdown paragraph of :func:`paired_answers`' result."""
    low, high = answers["saved_us_iqr"]
    return (
        f"\nServed answer, in process (`{answers['model']}`, `static-int8`, one thread; "
        f"{answers['answers']} paired answers of one test image each, alternating order): "
        f"**{answers['saved_us_median']} us less** with {new} than with {old} (median of the "
        f"pairs' differences, interquartile {low} to {high}); medians {answers['new_us']} vs "
        f"{answers['old_us']} us; scores that differ: {answers['scores_that_differ']}.\n"
    )
