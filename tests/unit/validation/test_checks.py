"""Dataset checks: the GX suite and the structural checks, each failure named with examples."""

import numpy as np
import pytest

from models.data.dataset import LabelledImages, SkippedFile, stratified_split
from models.tree.hierarchy import load_builtin_tree
from models.validation.checks import (
    ValidationConfig,
    class_count_table,
    format_failures,
    structural_checks,
    summary_table,
)
from models.validation.expectations import run_expectations

TREE = load_builtin_tree("fashion-mnist")


def make_data(n: int = 300, seed: int = 0) -> LabelledImages:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(30, 220, size=(n, 12, 12, 1), dtype=np.uint8)
    return LabelledImages("toy", images, labels, TREE, stratified_split(labels, 0.2, 0.2, seed))


def validate(data: LabelledImages, config: ValidationConfig | None = None, summary=None):
    config = config or ValidationConfig()
    summary = summary_table(data) if summary is None else summary
    outcomes, html = run_expectations(summary, class_count_table(data), data.hierarchy, config)
    outcomes += structural_checks(data, summary, config)
    return {o.name: o for o in outcomes}, html


def critical_failures(outcomes: dict) -> set[str]:
    return {n for n, o in outcomes.items() if not o.success and o.severity == "critical"}


@pytest.fixture(scope="module")
def clean_result():
    return validate(make_data())


def test_clean_data_passes_and_renders_data_docs(clean_result) -> None:
    outcomes, html = clean_result
    assert critical_failures(outcomes) == set()
    assert len(outcomes) >= 20
    assert "<html" in html and "expect_column_values_to_be_between" in html.replace("&quot;", "")
    assert html.count("<body") == 1  # one document with both tables' pages


def test_summary_table_columns() -> None:
    data = make_data()
    table = summary_table(data)
    assert len(table) == 300
    assert {
        "split",
        "height",
        "width",
        "channels",
        "dtype",
        "pixel_min",
        "pixel_max",
        "pixel_mean",
        "pixel_std",
        "label",
        "label_name",
        "digest",
    } <= set(table)
    assert table["label_name"].iloc[3] == "Dress"
    assert (table.groupby("split").size() == [60, 180, 60]).all()  # test, train, val


def test_blank_images_fail_with_example_rows() -> None:
    data = make_data()
    data.images[[5, 17, 23]] = 0  # 1 % blank, bound 0.1 %
    outcomes, _ = validate(data)
    name = "expect_column_values_to_be_between[pixel_std]"
    assert name in critical_failures(outcomes)
    assert [e["index"] for e in outcomes[name].examples] == [5, 17, 23]
    assert outcomes[name].summary.startswith("image_summary: 3 of 300 rows unexpected")


def test_wrong_shape_and_labels_outside_tree() -> None:
    data = make_data()
    summary = summary_table(data)
    summary.loc[7, "label"] = 12  # a label that is not a leaf of the tree
    summary.loc[7, "label_name"] = None
    outcomes, _ = validate(data, ValidationConfig(expected_image_shape=(28, 28, 1)), summary)
    failed = critical_failures(outcomes)
    assert {
        "expect_column_values_to_be_in_set[height]",
        "expect_column_values_to_be_in_set[label]",
        "expect_column_values_to_not_be_null[label_name]",
    } <= failed
    assert outcomes["expect_column_values_to_be_in_set[label]"].examples[0]["index"] == 7


def test_leakage_and_conflicting_duplicates() -> None:
    data = make_data()
    test_idx, train_idx = data.splits["test"], data.splits["train"]
    data.images[train_idx[:4]] = data.images[test_idx[:4]]  # test images copied into train
    data.labels[train_idx[0]] = (data.labels[test_idx[0]] + 1) % 10  # and one relabelled
    outcomes, _ = validate(data)
    failed = critical_failures(outcomes)
    assert {"leakage_train_test", "identical_images_same_label"} <= failed
    assert "4 test images also in train" in outcomes["leakage_train_test"].summary
    message = format_failures(list(outcomes.values()))
    assert "leakage_train_test: 4 test images also in train (bound 0)" in message
    assert f"e.g. split=test, index={int(test_idx[0])}" in message


def test_duplicates_within_a_split_are_a_warning() -> None:
    data = make_data()
    train = data.splits["train"]
    data.images[train[1:10]] = data.images[train[0]]
    data.labels[train[1:10]] = data.labels[train[0]]
    outcomes, _ = validate(data)
    dup = outcomes["duplicates_within_train"]
    assert not dup.success and dup.severity == "warning"
    assert "9 exact duplicate images in train" in dup.summary


def test_missing_class_fails_counts_and_tree_coverage() -> None:
    data = make_data()
    keep = data.labels != 8  # no Bag at all: Accessories has no images either
    data = LabelledImages(
        "toy",
        data.images[keep],
        data.labels[keep],
        TREE,
        stratified_split(data.labels[keep], 0.2, 0.2, 0),
    )
    outcomes, _ = validate(data)
    failed = critical_failures(outcomes)
    assert {
        "tree_coverage_item",
        "tree_coverage_group",
        'expect_column_values_to_be_between[count][split=="train"]',
    } <= failed
    assert "['Accessories']" in outcomes["tree_coverage_group"].summary
    count_examples = outcomes['expect_column_values_to_be_between[count][split=="train"]'].examples
    assert count_examples[0]["label_name"] == "Bag"


def test_too_many_skipped_files() -> None:
    data = make_data()
    data.skipped = [SkippedFile(f"x/{i}.png", "unreadable image") for i in range(40)]
    outcomes, _ = validate(data)
    assert "skipped_files" in critical_failures(outcomes)
    assert outcomes["skipped_files"].examples[0] == {
        "path": "x/0.png",
        "reason": "unreadable image",
    }


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        ValidationConfig.model_validate({"max_leaked_image": 3})
