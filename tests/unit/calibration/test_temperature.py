"""Temperature scaling per level keeps accuracy and lowers NLL."""

import torch

from models.calibration.diagram import reliability_diagram_png
from models.calibration.ece import expected_calibration_error
from models.calibration.temperature import fit_temperatures, level_nll
from models.tree.hierarchy import load_builtin_tree
from models.tree.merge import (
    TreeTensors,
    conditional_log_probs,
    decode_greedy,
    merged_log_probs,
)
from tests.toy_models import make_miscalibrated

TREE = load_builtin_tree("fashion-mnist")


def test_temperature_scaling_keeps_accuracy_and_lowers_nll() -> None:
    tt = TreeTensors(TREE)
    logits, labels, level_labels = make_miscalibrated()
    val = slice(0, 2000)
    test = slice(2000, 4000)
    temps = fit_temperatures([z[val] for z in logits], level_labels[val], tt)
    assert (temps > 2.0).all()  # it undoes the 4x overconfidence
    test_logits = [z[test] for z in logits]
    before = level_nll(test_logits, level_labels[test], tt)
    after = level_nll(test_logits, level_labels[test], tt, temps)
    assert all(a < b for a, b in zip(after, before, strict=True))
    # within every sibling group the ranking is unchanged, so greedy decoding is too
    scaled = [w / t for w, t in zip(test_logits, temps, strict=True)]
    greedy_before = decode_greedy(conditional_log_probs(test_logits, tt), tt)
    greedy_after = decode_greedy(conditional_log_probs(scaled, tt), tt)
    assert torch.equal(greedy_before, greedy_after)
    p_before = merged_log_probs(test_logits, tt).exp()
    p_after = merged_log_probs(test_logits, tt, temps).exp()
    ece_before = expected_calibration_error(p_before, labels[test])
    ece_after = expected_calibration_error(p_after, labels[test])
    assert ece_after < ece_before / 2
    png = reliability_diagram_png(
        {"before": (p_before, labels[test]), "after": (p_after, labels[test])}, "toy"
    )
    assert png[:4] == b"\x89PNG"
