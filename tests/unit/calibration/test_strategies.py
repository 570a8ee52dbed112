import json

import pytest
import torch

from models.calibration.ece import classwise_ece, expected_calibration_error, level_ece
from models.calibration.select import select_calibration
from models.calibration.strategies import STRATEGIES, fit_level_map, sibling_block_mask
from models.tree.hierarchy import load_builtin_tree
from models.tree.merge import (
    LevelCalibration,
    TreeTensors,
    level_conditional_log_probs,
    merged_log_probs,
    scale_logits,
)
from tests.toy_models import make_miscalibrated

TREE = load_builtin_tree("fashion-mnist")


def level_nll(z, y, tt, level):
    return float(-level_conditional_log_probs(z, tt, level).gather(1, y[:, None]).mean())


@pytest.mark.parametrize("method", STRATEGIES)
def test_every_strategy_lowers_held_out_nll_of_overconfident_logits(method: str) -> None:
    tt = TreeTensors(TREE)
    logits, _, level_labels = make_miscalibrated()
    fit, test = slice(0, 2000), slice(2000, 4000)
    for level, z in enumerate(logits):
        y = level_labels[:, level]
        level_map = fit_level_map(method, z[fit], y[fit], tt, level)
        after = level_map.apply(z[test], tt, level)
        assert level_nll(after, y[test], tt, level) < level_nll(z[test], y[test], tt, level)
        if method in ("matrix", "dirichlet"):  # no weight across sibling groups
            w = torch.tensor(level_map.weight)
            assert (w[~sibling_block_mask(tt, level)] == 0).all()


def test_maps_survive_json_and_temperature_map_equals_division() -> None:
    tt = TreeTensors(TREE)
    logits = make_miscalibrated(200)[0]
    maps = [
        LevelCalibration.temperature(2.0),
        LevelCalibration("vector", tuple([1.5] * 6), tuple([0.1] * 6)),
        LevelCalibration("dirichlet", tuple(map(tuple, torch.eye(10).tolist())), (0.0,) * 10),
    ]
    again = [LevelCalibration.from_dict(json.loads(json.dumps(m.to_dict()))) for m in maps]
    assert again == maps
    torch.testing.assert_close(scale_logits(logits, maps, tt)[0], logits[0] / 2.0)
    # an identity Dirichlet map gives back the conditional log-probabilities: same merge
    torch.testing.assert_close(
        merged_log_probs(logits, tt, [1.0, 1.0, maps[2]]), merged_log_probs(logits, tt)
    )
    with pytest.raises(ValueError, match="unknown calibration method"):
        LevelCalibration("platt")
    with pytest.raises(ValueError, match="needs the tree"):
        scale_logits(logits, maps)


def test_selection_fixes_overconfidence_and_keeps_a_calibrated_level() -> None:
    tt = TreeTensors(TREE)
    logits, labels, level_labels = make_miscalibrated(3000)
    # level 0 is calibrated already: it says 0.8 for a node that is right 80 % of the time
    g = torch.Generator().manual_seed(1)
    right = torch.rand(len(labels), generator=g) < 0.8
    said = torch.where(right, level_labels[:, 0], 1 - level_labels[:, 0])
    logits[0] = torch.log(torch.where(torch.nn.functional.one_hot(said, 2) > 0, 0.8, 0.2))
    maps, report = select_calibration(logits, level_labels, tt, folds=3)
    fine = report[TREE.level_names[-1]]
    assert fine["chosen"] != "identity" and fine["val_ece_after"] < fine["val_ece_before"]
    for name in TREE.level_names:  # never worse than it found it
        r = report[name]
        assert r["val_nll_after"] <= r["val_nll_before"] + 1e-9
        assert r["val_ece_after"] <= r["val_ece_before"] + 1e-9
        assert set(r["candidates"]) == {"identity", *STRATEGIES}
    before = level_ece(merged_log_probs(logits, tt).exp(), labels, tt)
    after = level_ece(merged_log_probs(logits, tt, maps).exp(), labels, tt)
    assert after["fine"] < before["fine"] / 2


def test_classwise_ece_on_hand_made_cases() -> None:
    labels = torch.tensor([0, 1, 0, 1])
    perfect = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert classwise_ece(perfect, labels) == 0.0
    # always 0.5/0.5 on balanced labels: calibrated per class too
    assert classwise_ece(torch.full((4, 2), 0.5), labels) == pytest.approx(0.0)
    # always sure of class 0, right half the time: class 0 gap 0.5, class 1 gap 0.5
    sure = torch.tensor([[1.0, 0.0]] * 4)
    assert classwise_ece(sure, labels) == pytest.approx(0.5)
    assert expected_calibration_error(sure, labels) == pytest.approx(0.5)


def test_config_names_the_candidates_and_refuses_unknown_ones() -> None:
    from typing import get_args

    from pydantic import ValidationError

    from models.calibration import CalibrationConfig
    from models.calibration.config import Strategy

    assert get_args(Strategy) == STRATEGIES
    assert CalibrationConfig().strategies == list(STRATEGIES)

    tt = TreeTensors(TREE)
    logits, _, level_labels = make_miscalibrated(1500)
    config = CalibrationConfig(strategies=["temperature", "vector"], folds=3, max_iter=30)
    _, report = select_calibration(
        logits, level_labels, tt, tuple(config.strategies), config.folds, max_iter=config.max_iter
    )
    for name in TREE.level_names:
        assert set(report[name]["candidates"]) == {"identity", "temperature", "vector"}
    assert report[TREE.level_names[-1]]["chosen"] in {"temperature", "vector"}
    with pytest.raises(ValidationError, match="platt"):
        CalibrationConfig(strategies=["platt"])
    with pytest.raises(ValidationError, match="Extra inputs"):
        CalibrationConfig(fold=3)


def test_maps_that_leave_any_level_worse_are_dropped_and_helpful_ones_kept() -> None:
    from models.calibration.guard import keep_no_level_worse, level_scores

    tt = TreeTensors(TREE)
    logits, labels, _ = make_miscalibrated(2000)
    identity = [LevelCalibration() for _ in logits]
    base = level_scores(logits, labels, tt, identity)
    good = [LevelCalibration.temperature(4.0) for _ in logits]  # undoes the 4x overconfidence
    kept, dropped = keep_no_level_worse(logits, labels, tt, good)
    assert kept == good and dropped == []
    # sharpening the (already overconfident) top level hurts it and every level below it
    bad = [LevelCalibration.temperature(0.2), *identity[1:]]
    kept, dropped = keep_no_level_worse(logits, labels, tt, bad)
    assert dropped == [TREE.level_names[0]] and kept == identity
    after = level_scores(logits, labels, tt, kept)
    for name, (nll, ece) in base.items():
        assert after[name][0] <= nll and after[name][1] <= ece
