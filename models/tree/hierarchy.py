"""Label trees of any depth: leaf <-> path maps, per-level labels and LCA distances.

A :class:`Hierarchy` is defined by its leaves, in dataset label order, and the path of node names
from the top level down to each leaf. Every leaf sits at the same depth, because the classifier
keeps one head per level. Node ``j`` of level ``l`` is identified by its index in
``hierarchy.level_nodes[l]``; the leaf level is the last one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml


class HierarchyError(ValueError):
    """A label tree is malformed; the message names the node at fault."""


@dataclass(frozen=True)
class Hierarchy:
    """A rooted label tree whose leaves are the dataset's classes.

    Attributes:
        name: a short identifier, e.g. ``fashion-mnist``.
        level_names: one name per level, top first; the last is the leaf level.
        paths: for each leaf, in label order, the node names from the top level to the leaf.
    """

    name: str
    level_names: tuple[str, ...]
    paths: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "level_names", tuple(self.level_names))
        object.__setattr__(self, "paths", tuple(tuple(p) for p in self.paths))
        _check_paths(self.name, self.level_names, self.paths)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Hierarchy:
        """Build a tree from its YAML/JSON form.

        The form is ``{name, levels: [..], tree: nested mapping whose innermost values are lists
        of leaf names, leaf_order: [..]}``. ``leaf_order`` (optional) fixes the label index of each
        leaf; without it leaves are numbered in the order the tree lists them.

        Raises:
            HierarchyError: on a malformed tree, naming the node at fault.
        """
        unknown = set(spec) - {"name", "levels", "tree", "leaf_order"}
        if unknown:
            raise HierarchyError(f"unknown keys in tree spec: {sorted(unknown)}")
        if "tree" not in spec:
            raise HierarchyError("tree spec has no 'tree' mapping")
        name = str(spec.get("name", "tree"))
        found = _walk(spec["tree"], ())
        depth = {len(p) for p in found}
        levels = spec.get("levels")
        if levels is None:
            levels = [f"level{i}" for i in range(max(depth))]
        paths_by_leaf: dict[str, tuple[str, ...]] = {}
        for path in found:
            leaf = path[-1]
            if leaf in paths_by_leaf:
                raise HierarchyError(
                    f"duplicate leaf {leaf!r}: at {'/'.join(paths_by_leaf[leaf])} "
                    f"and at {'/'.join(path)}"
                )
            paths_by_leaf[leaf] = path
        order = spec.get("leaf_order")
        if order is None:
            order = list(paths_by_leaf)
        order = [str(x) for x in order]
        _check_leaf_order(order, list(paths_by_leaf))
        return cls(
            name=name, level_names=tuple(levels), paths=tuple(paths_by_leaf[x] for x in order)
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> Hierarchy:
        """Load a tree from a YAML file (see :meth:`from_dict` for the form)."""
        path = Path(path)
        try:
            spec = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise HierarchyError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(spec, Mapping):
            raise HierarchyError(f"{path}: expected a mapping at the top level")
        try:
            return cls.from_dict(spec)
        except HierarchyError as err:
            raise HierarchyError(f"{path}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """Return the YAML/JSON form, the inverse of :meth:`from_dict`."""
        tree: dict[str, Any] = {}
        for path in self.paths:
            node = tree
            for part in path[:-2]:
                node = node.setdefault(part, {})
            if len(path) == 1:
                tree.setdefault("__leaves__", []).append(path[0])
            else:
                node.setdefault(path[-2], []).append(path[-1])
        if "__leaves__" in tree:  # one-level tree: the leaves themselves are the tree
            tree = tree["__leaves__"]
        return {
            "name": self.name,
            "levels": list(self.level_names),
            "tree": tree,
            "leaf_order": list(self.leaves),
        }

    def to_json(self) -> str:
        """Serialise to a canonical JSON string (stable across runs; used in content hashes)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Hierarchy:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    # ----------------------------------------------------------------- structure
    @property
    def depth(self) -> int:
        """Number of levels, the leaf level included."""
        return len(self.level_names)

    @property
    def leaves(self) -> tuple[str, ...]:
        """Leaf names in label order."""
        return tuple(p[-1] for p in self.paths)

    @property
    def num_leaves(self) -> int:
        """Number of leaves (dataset classes)."""
        return len(self.paths)

    @cached_property
    def level_nodes(self) -> tuple[tuple[str, ...], ...]:
        """Node names per level, in order of first appearance along the leaf order."""
        out: list[list[str]] = [[] for _ in range(self.depth)]
        seen: list[dict[tuple[str, ...], None]] = [{} for _ in range(self.depth)]
        for path in self.paths:
            for level in range(self.depth):
                key = path[: level + 1]
                if key not in seen[level]:
                    seen[level][key] = None
                    out[level].append(path[level])
        return tuple(tuple(names) for names in out)

    @property
    def level_sizes(self) -> tuple[int, ...]:
        """Number of nodes at each level."""
        return tuple(len(n) for n in self.level_nodes)

    @cached_property
    def leaf_paths(self) -> np.ndarray:
        """``[num_leaves, depth]`` int64: node index at each level on each leaf's path."""
        lookup = [
            {name: i for i, name in enumerate(names)} for names in self.level_nodes
        ]  # names are unique per level (checked at construction)
        rows = [[lookup[lv][p[lv]] for lv in range(self.depth)] for p in self.paths]
        return np.asarray(rows, dtype=np.int64).reshape(self.num_leaves, self.depth)

    @cached_property
    def parents(self) -> tuple[np.ndarray, ...]:
        """Per level ``l >= 1``: ``parents[l][j]`` is the index at level ``l-1`` of node ``j``.

        ``parents[0]`` is all zeros (the implicit root).
        """
        out = [np.zeros(self.level_sizes[0], dtype=np.int64)]
        for level in range(1, self.depth):
            par = np.full(self.level_sizes[level], -1, dtype=np.int64)
            par[self.leaf_paths[:, level]] = self.leaf_paths[:, level - 1]
            out.append(par)
        return tuple(out)

    def level_labels(self, leaf_labels: np.ndarray, level: int) -> np.ndarray:
        """Map leaf labels to the node index of their ancestor at ``level``.

        Raises:
            HierarchyError: if a label is not a leaf of this tree.
        """
        leaf_labels = np.asarray(leaf_labels)
        self.check_labels(leaf_labels)
        return self.leaf_paths[leaf_labels.astype(np.int64), level]

    def all_level_labels(self, leaf_labels: np.ndarray) -> np.ndarray:
        """``[N, depth]`` node indices along the path of each leaf label."""
        leaf_labels = np.asarray(leaf_labels)
        self.check_labels(leaf_labels)
        return self.leaf_paths[leaf_labels.astype(np.int64)]

    def check_labels(self, leaf_labels: np.ndarray, where: str = "labels") -> None:
        """Raise if any label is not a leaf index of this tree, naming the first offenders."""
        leaf_labels = np.asarray(leaf_labels)
        if leaf_labels.size == 0:
            return
        if not np.issubdtype(leaf_labels.dtype, np.integer):
            raise HierarchyError(f"{where}: labels must be integers, got {leaf_labels.dtype}")
        bad = np.flatnonzero((leaf_labels < 0) | (leaf_labels >= self.num_leaves))
        if bad.size:
            examples = ", ".join(f"#{i}={int(leaf_labels[i])}" for i in bad[:5])
            raise HierarchyError(
                f"{where}: {bad.size} label(s) outside the tree {self.name!r} "
                f"(valid 0..{self.num_leaves - 1}): {examples}"
            )

    def leaf_index(self, name: str) -> int:
        """Label index of the leaf called ``name``."""
        try:
            return self.leaves.index(name)
        except ValueError:
            raise HierarchyError(f"{name!r} is not a leaf of tree {self.name!r}") from None

    def path_names(self, leaf: int) -> tuple[str, ...]:
        """Node names from the top level down to leaf ``leaf``."""
        return self.paths[leaf]

    @cached_property
    def lca_height(self) -> np.ndarray:
        """``[num_leaves, num_leaves]`` height of the lowest common ancestor of two leaves.

        0 for the same leaf, 1 for siblings, ..., ``depth`` when only the root is shared. This is
        the mistake severity of Bertinetto et al. (2020) on a tree whose leaves share one depth.
        """
        p = self.leaf_paths
        # shared[i, j] = number of leading levels on which the two paths agree
        same = p[:, None, :] == p[None, :, :]
        shared = np.cumprod(same, axis=2).sum(axis=2)
        return (self.depth - shared).astype(np.int64)

    def lca_distance(self, a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
        """Height of the lowest common ancestor of leaves ``a`` and ``b`` (vectorised)."""
        a_arr, b_arr = np.asarray(a), np.asarray(b)
        self.check_labels(a_arr, "a")
        self.check_labels(b_arr, "b")
        return self.lca_height[a_arr, b_arr]

    def describe(self) -> str:
        """A readable multi-line drawing of the tree."""
        lines = [f"{self.name} ({' > '.join(self.level_names)})"]
        printed: set[tuple[str, ...]] = set()
        # grouped by subtree (node order of first appearance), so siblings print together
        order = sorted(range(self.num_leaves), key=lambda i: tuple(self.leaf_paths[i]))
        for leaf_id in order:
            path = self.paths[leaf_id]
            for level in range(self.depth):
                key = path[: level + 1]
                if key in printed:
                    continue
                printed.add(key)
                suffix = f"  [{leaf_id}]" if level == self.depth - 1 else ""
                lines.append("  " * (level + 1) + path[level] + suffix)
        return "\n".join(lines)


def _check_leaf_order(order: list[str], leaves: list[str]) -> None:
    """Raise naming the labels when ``leaf_order`` and the tree's leaves are not one set."""
    problems = {
        "leaf_order names labels that are not in the tree": [x for x in order if x not in leaves],
        "tree leaves missing from leaf_order": [x for x in leaves if x not in order],
        "leaf_order lists labels twice": sorted({x for x in order if order.count(x) > 1}),
    }
    for message, found in problems.items():
        if found:
            raise HierarchyError(f"{message}: {found}")


def _walk(node: Any, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Flatten a nested mapping/list tree into leaf paths, validating as it goes."""
    where = "/".join(prefix) or "<root>"
    if isinstance(node, Mapping):
        if not node:
            raise HierarchyError(f"empty node {where!r}: it has no children")
        out: list[tuple[str, ...]] = []
        for key, child in node.items():
            if key is None or str(key).strip() == "":
                raise HierarchyError(f"node under {where!r} has an empty name")
            out.extend(_walk(child, (*prefix, str(key))))
        return out
    if isinstance(node, Sequence) and not isinstance(node, str):
        if len(node) == 0:
            raise HierarchyError(f"empty node {where!r}: it has no leaves")
        out = []
        for item in node:
            if isinstance(item, Mapping):  # a list may mix leaves and sub-trees
                out.extend(_walk(item, prefix))
            elif item is None or str(item).strip() == "":
                raise HierarchyError(f"leaf under {where!r} has an empty name")
            else:
                out.append((*prefix, str(item)))
        return out
    if node is None:
        raise HierarchyError(f"empty node {where!r}: it has no children")
    raise HierarchyError(f"node {where!r}: expected a mapping or a list, got {node!r}")


def _check_paths(
    name: str, level_names: tuple[str, ...], paths: tuple[tuple[str, ...], ...]
) -> None:
    if not paths:
        raise HierarchyError(f"tree {name!r} has no leaves")
    depth = len(level_names)
    if depth == 0:
        raise HierarchyError(f"tree {name!r} has no levels")
    for path in paths:
        if len(path) != depth:
            raise HierarchyError(
                f"leaf {'/'.join(path)!r} is at depth {len(path)} but tree {name!r} has "
                f"{depth} levels {list(level_names)}; every leaf must sit at the same depth"
            )
    leaves = [p[-1] for p in paths]
    if len(set(leaves)) != len(leaves):
        dup = sorted({x for x in leaves if leaves.count(x) > 1})
        raise HierarchyError(f"duplicate leaf {dup[0]!r} in tree {name!r}")
    # A node name must mean one node per level: "Other" under two parents is ambiguous.
    for level in range(depth - 1):
        owner: dict[str, tuple[str, ...]] = {}
        for path in paths:
            node, parent = path[level], path[:level]
            if owner.setdefault(node, parent) != parent:
                raise HierarchyError(
                    f"node {node!r} appears under two parents at level {level} "
                    f"({'/'.join(owner[node]) or '<root>'} and {'/'.join(parent) or '<root>'})"
                )


_TREES_DIR = Path(__file__).with_name("trees")


def builtin_tree_path(name: str) -> Path:
    """Path of a shipped tree YAML (``fashion-mnist``, ``cifar10``, ``cifar100``)."""
    path = _TREES_DIR / f"{name.replace('-', '_')}.yaml"
    if not path.exists():
        known = sorted(p.stem.replace("_", "-") for p in _TREES_DIR.glob("*.yaml"))
        raise HierarchyError(f"no built-in tree {name!r}; known: {known}")
    return path


def load_builtin_tree(name: str) -> Hierarchy:
    """Load one of the trees shipped in ``models/tree/trees``."""
    return Hierarchy.from_yaml(builtin_tree_path(name))
