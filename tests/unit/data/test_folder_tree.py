"""Label trees read from nested image folders."""

from pathlib import Path

import pytest

from models.data.sources import folder_tree
from models.tree.hierarchy import HierarchyError


def test_folder_tree(tmp_path: Path) -> None:
    for leaf in ("animals/cat", "animals/dog", "vehicles/car"):
        (tmp_path / leaf).mkdir(parents=True)
        (tmp_path / leaf / "a.png").write_bytes(b"")
    (tmp_path / ".hidden").mkdir()
    tree = folder_tree(tmp_path, name="toy")
    assert tree.paths == (("animals", "cat"), ("animals", "dog"), ("vehicles", "car"))
    (tmp_path / "vehicles" / "bus").mkdir()
    with pytest.raises(HierarchyError, match="empty node 'vehicles/bus'"):
        folder_tree(tmp_path)


def test_folder_tree_rejects_mixed_and_uneven(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.png").write_bytes(b"")
    (tmp_path / "a" / "y.png").write_bytes(b"")
    with pytest.raises(HierarchyError, match="holds both images and sub-folders"):
        folder_tree(tmp_path)
    (tmp_path / "a" / "y.png").unlink()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "z.png").write_bytes(b"")
    with pytest.raises(HierarchyError, match="same depth"):
        folder_tree(tmp_path)
