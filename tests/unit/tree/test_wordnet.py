"""Label trees from WordNet 3.0 (Debian's wordnet-base) for real ImageNet class ids."""

from __future__ import annotations

import pytest

from models.tree.wordnet import WordNetError, open_wordnet, synset_of, wordnet_tree

# Real ImageNet-1k classes: two fish, a bird, two dogs, a cat, and three artifacts, among them
# the two synsets ImageNet calls "crane" (the bird and the machine).
TENCH, GOLDFISH = "n01440764", "n01443537"
CRANE_BIRD, CRANE_MACHINE = "n02012849", "n03126707"
CHIHUAHUA, SHIH_TZU, TABBY = "n02085620", "n02086240", "n02123045"
RACER, AMBULANCE = "n04037443", "n02701002"
WNIDS = [TENCH, CRANE_BIRD, CRANE_MACHINE, CHIHUAHUA, TABBY, RACER, SHIH_TZU, GOLDFISH, AMBULANCE]


def test_three_level_tree_of_imagenet_classes():
    tree = wordnet_tree(WNIDS, levels=3)
    assert tree.depth == 3
    assert tree.level_names == ("level1", "level2", "synset")
    assert tree.num_leaves == len(WNIDS)
    path = dict(zip(WNIDS, tree.paths, strict=True))
    # leaves keep the label order of the wnids and carry people's names
    assert path[TENCH][-1] == "tench" and path[TABBY][-1] == "tabby"
    # the two "crane"s are told apart by their wnid
    assert path[CRANE_BIRD][-1] == f"crane ({CRANE_BIRD})"
    assert path[CRANE_MACHINE][-1] == f"crane ({CRANE_MACHINE})"
    # top level: animals vs artifacts (their branching ancestors under the common ancestor)
    assert {p[0] for p in tree.paths} == {"vertebrate", "instrumentality"}
    animals = {TENCH, GOLDFISH, CRANE_BIRD, CHIHUAHUA, SHIH_TZU, TABBY}
    for wnid in WNIDS:
        assert (path[wnid][0] == "vertebrate") == (wnid in animals)
    # second level groups what WordNet groups: the fish, the carnivores, the vehicles
    assert path[TENCH][1] == path[GOLDFISH][1] == "cyprinid"
    assert path[CHIHUAHUA][1] == path[SHIH_TZU][1] == path[TABBY][1] == "carnivore"
    assert path[RACER][1] == path[AMBULANCE][1]
    assert path[RACER][1] == "car"
    assert tree.level_sizes == (2, 5, 9)


def test_deeper_cut_and_padding():
    tree = wordnet_tree(WNIDS, levels=4, level_names=["kingdom", "group", "family", "fine"])
    assert tree.level_names == ("kingdom", "group", "family", "fine")
    path = dict(zip(WNIDS, tree.paths, strict=True))
    assert path[CHIHUAHUA][2] == path[SHIH_TZU][2] == "toy dog"
    assert path[TABBY][2] == "feline"
    # the bird has no branching ancestor below "bird": its most general single-child ancestor
    assert path[CRANE_BIRD][1:3] == ("bird", "aquatic bird")
    # tench has nothing left between "cyprinid" and itself: it stands for itself
    assert path[TENCH][2:] == ("tench", "tench")
    # two classes: no branching below their common ancestor, so their most general ancestors
    small = wordnet_tree([TABBY, RACER], levels=2)
    assert small.paths == (("living thing", "tabby"), ("artifact", "racer"))


def test_bad_wnids_fail_naming_them():
    with pytest.raises(WordNetError, match="n09999999"):
        wordnet_tree([TENCH, "n09999999"], levels=2)
    with pytest.raises(WordNetError, match="'x123'"):
        synset_of("x123")
    with pytest.raises(WordNetError, match=f"{TENCH}.*twice"):
        wordnet_tree([TENCH, TENCH, RACER], levels=2)
    # a class that contains another (dog above Chihuahua) is not a valid label set
    with pytest.raises(WordNetError, match="n02084071.*ancestor"):
        wordnet_tree(["n02084071", CHIHUAHUA], levels=2)


def test_missing_wordnet_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("HIERGAN_WORDNET_DIR", str(tmp_path))
    with pytest.raises(WordNetError, match="apt-get install wordnet-base"):
        open_wordnet(str(tmp_path))
