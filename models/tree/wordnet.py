"""Label trees from WordNet's noun hierarchy, for ImageNet-style classes named by synset (wnid).

WordNet 3.0 is read offline, from Debian's ``wordnet-base`` package (``/usr/share/wordnet``, or
the folder named by ``HIERGAN_WORDNET_DIR``), through nltk's own WordNet reader: no download.

How a tree is built from any set of wnids:

1. every synset gets one *canonical parent*: among its hypernyms (and instance hypernyms), the
   deepest one, ties broken by name; following canonical parents from each leaf gives a path to
   ``entity``, and the union of those paths is a tree (a DAG would give a node two parents);
2. the tree is collapsed: chains of nodes with one child are dropped, so each kept internal node
   is a real branching among the chosen classes, and the top is their lowest common ancestor;
3. ``levels`` levels are cut from the top: level ``k`` holds each leaf's branching ancestor at
   depth ``k + 1`` below the common ancestor, the last level the leaves. A leaf whose branch is
   too short keeps its most general dropped ancestor instead (``fish`` above ``tench``), or its
   own name when it has none;
4. nodes are named for people (the synset's first lemma, ``race car``); two synsets with the same
   name on one level (ImageNet has two ``crane`` synsets) are told apart by their wnid.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from models.tree.hierarchy import Hierarchy, HierarchyError

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
# WordNet 3.0's 45 lexicographer files, in file-number order (lexnames(5WN)). nltk's reader needs
# the `lexnames` file, which Debian's wordnet-base does not ship: it is this fixed list.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_CATEGORY = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


class WordNetError(HierarchyError):
    """WordNet is missing, or a wnid is not one of its noun synsets."""


def wordnet_dir() -> Path:
    """Where WordNet's dict files are read from (``HIERGAN_WORDNET_DIR`` or Debian's folder)."""
    return Path(os.environ.get("HIERGAN_WORDNET_DIR") or DEBIAN_WORDNET_DIR)


@lru_cache(maxsize=2)
def open_wordnet(root: str | None = None) -> Any:
    """Nltk's WordNet reader over a WordNet 3.0 dict folder (default :func:`wordnet_dir`).

    Raises:
        WordNetError: with the command that installs it, when the folder has no WordNet.
    """
    folder = Path(root) if root else wordnet_dir()
    if not (folder / "data.noun").is_file() or not (folder / "index.noun").is_file():
        raise WordNetError(
            f"WordNet not found in {folder} (no data.noun/index.noun). Install Debian's "
            "wordnet-base (as root: apt-get install wordnet-base; `make setup` does), or set "
            "HIERGAN_WORDNET_DIR to a WordNet 3.0 dict folder."
        )
    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _Reader(WordNetCorpusReader):  # type: ignore[misc]
        """nltk's reader with the two things Debian's files lack supplied in code."""

        def open(self, file: str) -> Any:
            if file == "lexnames":
                lines = (
                    f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n"
                    for i, name in enumerate(LEXNAMES)
                )
                return io.StringIO("".join(lines))
            return super().open(file)

        def map_wn(self, version: str = "wordnet") -> None:
            # maps other WordNet versions onto this one for the multilingual data: not used
            return None

    # nltk reads only below the folders of its data path: add this one.
    if str(folder) not in map(str, nltk.data.path):
        nltk.data.path.append(str(folder))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available"
        return _Reader(str(folder), None)


def synset_of(wnid: str, reader: Any | None = None) -> Any:
    """The noun synset of an ImageNet wnid (``n01440764`` = offset 1440764 in WordNet 3.0).

    Raises:
        WordNetError: naming the wnid, when it is malformed or not in WordNet.
    """
    reader = reader or open_wordnet()
    if len(wnid) != 9 or wnid[0] != "n" or not wnid[1:].isdigit():
        raise WordNetError(f"{wnid!r} is not a WordNet noun id (expected n + 8 digits)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nltk warns before returning None
            synset = reader.synset_from_pos_and_offset("n", int(wnid[1:]))
    except Exception as err:  # noqa: BLE001 - nltk raises several types for a bad offset
        raise WordNetError(f"wnid {wnid!r} is not in WordNet 3.0 ({err})") from None
    if synset is None:
        raise WordNetError(f"wnid {wnid!r} is not in WordNet 3.0 (no noun synset at that offset)")
    return synset


def wnid_of(synset: Any) -> str:
    """The wnid of a noun synset."""
    return f"n{synset.offset():08d}"


def display_name(synset: Any) -> str:
    """The synset's first lemma, as people write it: ``race_car`` -> ``race car``."""
    return str(synset.lemma_names()[0]).replace("_", " ")


def wordnet_tree(
    wnids: Sequence[str],
    levels: int,
    name: str = "imagenet",
    level_names: Sequence[str] | None = None,
) -> Hierarchy:
    """A tree of ``levels`` levels whose leaves are ``wnids`` (leaf ``i`` is ``wnids[i]``).

    Args:
        wnids: ImageNet class ids, in label order; any subset of WordNet's noun synsets.
        levels: levels of the tree, the leaf level included (2 or more).
        name: the tree's name.
        level_names: one name per level; default ``level1 .. level<L-1>, synset``.

    Raises:
        WordNetError: naming a wnid that WordNet lacks, or a duplicate.
    """
    if levels < 2:
        raise HierarchyError(f"a WordNet tree needs at least 2 levels, got {levels}")
    if len(set(wnids)) != len(wnids):
        dup = sorted({w for w in wnids if list(wnids).count(w) > 1})
        raise WordNetError(f"wnid {dup[0]!r} is listed twice")
    if len(wnids) < 2:
        raise HierarchyError(f"a tree needs at least 2 classes, got {list(wnids)}")
    reader = open_wordnet()
    leaves = [synset_of(w, reader) for w in wnids]
    chains = [_canonical_path(s) for s in leaves]  # root .. leaf
    children: dict[Any, set[Any]] = {}
    for chain in chains:
        for parent, child in zip(chain, chain[1:], strict=False):
            children.setdefault(parent, set()).add(child)
    leaf_set = set(leaves)
    for leaf in leaves:
        if children.get(leaf):
            below = sorted(wnid_of(c) for c in _descendants(leaf, children) & leaf_set)
            raise WordNetError(
                f"wnid {wnid_of(leaf)!r} ({display_name(leaf)}) is an ancestor of other classes "
                f"{below[:5]}: classes must not contain each other"
            )
    paths = [_cut(chain, children, levels) for chain in chains]
    names = _unique_names(paths, levels)
    return Hierarchy(
        name=name,
        level_names=tuple(level_names or [*(f"level{i + 1}" for i in range(levels - 1)), "synset"]),
        paths=tuple(tuple(names[(lv, node)] for lv, node in enumerate(path)) for path in paths),
    )


def _canonical_path(synset: Any) -> list[Any]:
    """From WordNet's root down to ``synset``, through each node's canonical parent."""
    path = [synset]
    node = synset
    while True:
        parents = node.hypernyms() + node.instance_hypernyms()
        if not parents:
            return path[::-1]
        node = min(parents, key=lambda s: (-s.max_depth(), s.name()))
        path.append(node)


def _descendants(node: Any, children: dict[Any, set[Any]]) -> set[Any]:
    out, todo = set(), [node]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _cut(chain: list[Any], children: dict[Any, set[Any]], levels: int) -> list[Any]:
    """``levels`` nodes for one leaf: branching ancestors from the top, padded, then the leaf."""
    # Branching nodes strictly below the common ancestor: the common ancestor is the deepest node
    # every chain shares, i.e. the first node (from the top) with more than one child.
    start = next(i for i, node in enumerate(chain) if len(children.get(node, ())) > 1)
    below = chain[start + 1 : -1]
    branching = [n for n in below if len(children.get(n, ())) > 1]
    kept = branching[: levels - 1]
    if len(kept) < levels - 1:
        # pad with the most general single-child ancestors under the deepest kept node
        anchor = below.index(kept[-1]) + 1 if kept else 0
        chain_nodes = [n for n in below[anchor:] if len(children.get(n, ())) == 1]
        kept += chain_nodes[: levels - 1 - len(kept)]
    kept += [chain[-1]] * (levels - 1 - len(kept))  # still short: the leaf stands for itself
    return [*kept, chain[-1]]


def _unique_names(paths: list[list[Any]], levels: int) -> dict[tuple[int, Any], str]:
    """A display name per (level, synset), unique within its level (wnid added on a clash)."""
    out: dict[tuple[int, Any], str] = {}
    for level in range(levels):
        nodes = sorted({p[level] for p in paths}, key=lambda s: s.name())
        base = {node: display_name(node) for node in nodes}
        counts: dict[str, int] = {}
        for text in base.values():
            counts[text.lower()] = counts.get(text.lower(), 0) + 1
        for node in nodes:
            text = base[node]
            out[(level, node)] = f"{text} ({wnid_of(node)})" if counts[text.lower()] > 1 else text
    # a leaf name is unique over the whole tree
    leaf_names = [out[(levels - 1, p[-1])] for p in paths]
    assert len(set(leaf_names)) == len(leaf_names)
    return out
