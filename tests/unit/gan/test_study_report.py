"""The label-efficiency study's report: the picture of what G draws beside the table."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from bench.label_efficiency_report import SAMPLES_PER_LEAF, markdown, samples_picture
from models.tree.hierarchy import load_builtin_tree

TREE = load_builtin_tree("fashion-mnist")


def _samples(runs: Path, job: str, value: int = 0, per_leaf: int = SAMPLES_PER_LEAF) -> None:
    leaves = np.repeat(np.arange(TREE.num_leaves), per_leaf)
    images = np.full((len(leaves), 28, 28, 1), value, np.uint8)
    np.savez(runs / f"{job}.samples.npz", images=images, leaves=leaves)


def test_the_picture_shows_the_plain_triple_arm_at_the_fewest_labels_and_first_seed(
    tmp_path: Path,
) -> None:
    for job in ("triple-flat-0.01-s0", "triple-0.1-s0", "triple-0.01-s2"):
        _samples(tmp_path, job, value=0)
    _samples(tmp_path, "triple-0.01-s1", value=255)  # the one to show: white where others are black
    (tmp_path / "triple-0.01-s1.json").write_text("{}")  # results beside the samples are ignored
    picture = samples_picture(tmp_path, TREE)
    assert picture is not None
    job, png = picture
    assert job == "triple-0.01-s1"
    (tmp_path / "triple-0.01-s1.samples.npz").unlink()
    (tmp_path / "triple-0.01-s2.samples.npz").unlink()
    other = samples_picture(tmp_path, TREE)
    assert other is not None and other[0] == "triple-flat-0.01-s0"
    shown, black = (
        np.asarray(Image.open(io.BytesIO(b)).convert("L"), float) for b in (png, other[1])
    )
    assert shown.shape == black.shape and shown.mean() > black.mean() + 20  # its images are drawn


def test_without_a_triple_arm_there_is_no_picture_and_the_page_says_nothing_of_one(
    tmp_path: Path,
) -> None:
    _samples(tmp_path, "scratch-0.01-s0")  # no other arm leaves samples; even so, not G's
    _samples(tmp_path, "triple-notes")  # nor a file named otherwise
    assert samples_picture(tmp_path, TREE) is None
    head = {
        "label": "",
        "machine": "m",
        "command": "c",
        "seconds": 1.0,
        "test_images": 10,
        "targets": {},
        "jobs": {},
        "settings": {},
    }
    assert "samples" not in markdown([], head, None)
    shown = markdown([], head, None, ("triple-0.01-s0", "label_efficiency_samples.png"))
    assert "![samples](label_efficiency_samples.png)" in shown and "triple-0.01-s0" in shown
