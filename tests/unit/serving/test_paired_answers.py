"""bench/paired_answers.py: each image answered under both settings, the new one left on."""

from __future__ import annotations

import numpy as np

from bench.paired_answers import answers_section, paired_answers


class _Predictor:
    """Answers with a score that the setting changes for bright images only."""

    def __init__(self) -> None:
        self.new = True
        self.calls: list[tuple[bool, int]] = []

    def answer(self, images: np.ndarray) -> list[dict]:
        value = int(images[0].max())
        self.calls.append((self.new, value))
        score = float(value) + (0.5 if self.new and value > 200 else 0.0)
        return [{"ood": {"score": score}}]


def test_every_image_is_answered_under_both_settings_in_alternating_order() -> None:
    images = np.stack([np.full((4, 4, 1), v, np.uint8) for v in (10, 250, 30, 240)])
    predictor = _Predictor()

    def switch(new: bool) -> None:
        predictor.new = new

    result = paired_answers(predictor, images, switch, repeats=2)
    timed = predictor.calls[len(images) :]  # after the warm-up answers
    assert len(timed) == 2 * 2 * len(images)
    firsts = [timed[i][0] for i in range(0, len(timed), 2)]
    assert True in firsts and False in firsts  # the order alternates
    assert all(timed[i][1] == timed[i + 1][1] for i in range(0, len(timed), 2))  # pairs
    assert result["answers"] == 2 * len(images)
    assert result["scores_that_differ"] == 2 * 2  # the two bright images, both repeats
    assert predictor.new  # left on the new setting
    assert result["saved_us_iqr"][0] <= result["saved_us_iqr"][1]
    text = answers_section({**result, "model": "m"}, "new", "old")
    assert "with new than with old" in text and "scores that differ: 4" in text
