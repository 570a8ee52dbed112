"""Label trees: structure, level labels, LCA distances, round trips, errors naming the node."""

from pathlib import Path

import numpy as np
import pytest

from models.tree.hierarchy import Hierarchy, HierarchyError, load_builtin_tree


@pytest.fixture
def fmnist() -> Hierarchy:
    return load_builtin_tree("fashion-mnist")


def test_fashion_mnist_tree_matches_seo_and_shin(fmnist: Hierarchy) -> None:
    assert fmnist.depth == 3
    assert fmnist.level_sizes == (2, 6, 10)
    assert fmnist.level_nodes[0] == ("Clothes", "Goods")
    assert set(fmnist.level_nodes[1]) == {
        "Tops",
        "Bottoms",
        "Dresses",
        "Outers",
        "Shoes",
        "Accessories",
    }
    assert fmnist.leaves[0] == "T-shirt/top" and fmnist.leaves[9] == "Ankle boot"
    assert fmnist.path_names(8) == ("Goods", "Accessories", "Bag")
    assert fmnist.path_names(6) == ("Clothes", "Tops", "Shirt")


def test_leaf_paths_and_parents_are_consistent(fmnist: Hierarchy) -> None:
    paths = fmnist.leaf_paths
    assert paths.shape == (10, 3)
    for level in range(1, 3):
        # the parent of each leaf's node at `level` is the leaf's node at `level - 1`
        np.testing.assert_array_equal(fmnist.parents[level][paths[:, level]], paths[:, level - 1])
    assert (fmnist.parents[0] == 0).all()


def test_level_labels(fmnist: Hierarchy) -> None:
    leaf = np.array([0, 1, 8, 9, 6])
    groups = [fmnist.level_nodes[1][i] for i in fmnist.level_labels(leaf, 1)]
    assert groups == ["Tops", "Bottoms", "Accessories", "Shoes", "Tops"]
    top = fmnist.all_level_labels(leaf)[:, 0]
    assert [fmnist.level_nodes[0][i] for i in top] == [
        "Clothes",
        "Clothes",
        "Goods",
        "Goods",
        "Clothes",
    ]


def test_lca_distance(fmnist: Hierarchy) -> None:
    tshirt, trouser, shirt, bag, sandal = (
        fmnist.leaf_index(n) for n in ("T-shirt/top", "Trouser", "Shirt", "Bag", "Sandal")
    )
    assert fmnist.lca_distance(tshirt, tshirt) == 0
    assert fmnist.lca_distance(tshirt, shirt) == 1  # both Tops
    assert fmnist.lca_distance(tshirt, trouser) == 2  # both Clothes
    assert fmnist.lca_distance(tshirt, bag) == 3  # only the root
    assert fmnist.lca_distance(sandal, bag) == 2  # both Goods
    np.testing.assert_array_equal(fmnist.lca_distance([tshirt, bag], [shirt, bag]), [1, 0])
    assert (fmnist.lca_height == fmnist.lca_height.T).all()


def test_builtin_cifar_trees() -> None:
    c10 = load_builtin_tree("cifar10")
    assert c10.level_sizes == (2, 10)
    assert c10.path_names(c10.leaf_index("truck")) == ("vehicles", "truck")
    c100 = load_builtin_tree("cifar100")
    assert c100.level_sizes == (20, 100)
    assert list(c100.leaves) == sorted(c100.leaves)  # CIFAR-100's label order is alphabetical
    assert c100.path_names(c100.leaf_index("maple_tree")) == ("trees", "maple_tree")


def test_round_trips(fmnist: Hierarchy, tmp_path: Path) -> None:
    assert Hierarchy.from_dict(fmnist.to_dict()) == fmnist
    assert Hierarchy.from_json(fmnist.to_json()) == fmnist
    import yaml

    (tmp_path / "t.yaml").write_text(yaml.safe_dump(fmnist.to_dict()))
    assert Hierarchy.from_yaml(tmp_path / "t.yaml") == fmnist


def test_any_depth() -> None:
    tree = Hierarchy.from_dict({"tree": {"a": {"b": {"c": ["x", "y"]}, "d": {"e": ["z"]}}}})
    assert tree.depth == 4 and tree.level_sizes == (1, 2, 2, 3)
    assert tree.lca_distance(0, 2) == 3
    flat = Hierarchy.from_dict({"tree": ["p", "q"]})
    assert flat.depth == 1 and flat.to_dict()["tree"] == ["p", "q"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"tree": {"A": ["x", "y"], "B": ["x"]}}, "duplicate leaf 'x'"),
        ({"tree": {"A": ["x"]}, "leaf_order": ["x", "nope"]}, "not in the tree: ['nope']"),
        ({"tree": {"A": ["x"], "B": ["y"]}, "leaf_order": ["x"]}, "missing from leaf_order: ['y']"),
        ({"tree": {"A": ["x"], "B": {}}}, "empty node 'B'"),
        ({"tree": {"A": ["x"], "B": []}}, "empty node 'B'"),
        ({"tree": {"A": ["x"], "B": None}}, "empty node 'B'"),
        ({"tree": {"A": {"C": ["x"]}, "B": ["y"]}}, "leaf 'B/y' is at depth 2"),
        ({"tree": {"A": {"C": ["x"]}, "B": {"C": ["y"]}}}, "node 'C' appears under two parents"),
        ({"tree": {"A": ["x"]}, "colour": "red"}, "unknown keys"),
    ],
)
def test_invalid_trees_name_the_node(spec: dict, message: str) -> None:
    with pytest.raises(HierarchyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Hierarchy.from_dict(spec)


def test_labels_outside_tree_are_named(fmnist: Hierarchy) -> None:
    with pytest.raises(
        HierarchyError, match=r"2 label\(s\) outside the tree 'fashion-mnist'.*#1=10, #3=-1"
    ):
        fmnist.check_labels(np.array([0, 10, 3, -1]))
    with pytest.raises(HierarchyError, match="not a leaf"):
        fmnist.leaf_index("Sock")


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("tree: {A: [x], A2: }\n")
    with pytest.raises(HierarchyError, match=r"bad\.yaml: empty node 'A2'"):
        Hierarchy.from_yaml(path)


def test_leaf_level_nodes_are_in_label_order() -> None:
    # decode_greedy relies on it: the leaf-level node index is the leaf label
    for name in ("fashion-mnist", "cifar10", "cifar100"):
        tree = load_builtin_tree(name)
        assert tree.level_nodes[-1] == tree.leaves
        np.testing.assert_array_equal(tree.leaf_paths[:, -1], np.arange(tree.num_leaves))
