"""Containment rules of gitops/placement.py on real directories (and real records)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.engine.setup import RunSettings, create_workspace
from reconciler.gitops.placement import PlacementError, Places
from reconciler.spec import load_study_text


def _workspace(path: Path, name: str) -> Path:
    text = f"description: {{name: '{name}', description: d}}\nstudy:\n" + (
        "  - {name: s, description: d, run: {cmd: echo}}\n"
    )
    where = {"OUTPUT_PATH": str(path), "SPECROOT": "."}
    study = load_study_text(text, "s.yaml")
    create_workspace(study, path, RunSettings(), cwd=path.parent, spec_text=text, locations=where)
    return path


@pytest.fixture
def places(tmp_path: Path) -> Places:
    root = tmp_path / "repo" / ".reconciler" / "studies"
    root.mkdir(parents=True)
    return Places(root, tmp_path / "repo", (tmp_path / "allowed",))


@pytest.mark.parametrize(
    ("name", "where"), [("../..", "...."), ("/abs", "abs"), ("my study", "my_study"), ("a", "a")]
)
def test_the_default_place_is_the_sanitised_name_inside_the_root(
    places: Places, name: str, where: str
) -> None:
    assert places.place(name, None) == places.root / where


@pytest.mark.parametrize("name", ["..", ".", "///", "日本語"])
def test_a_name_with_nothing_usable_gets_a_hashed_place_inside_the_root(
    places: Places, name: str
) -> None:
    where = places.place(name, None)
    assert where.parent == places.root and where.name.startswith("study-")
    assert where == places.place(name, None) != places.place("other" + name, None)


def test_a_workspace_made_under_the_raw_name_keeps_its_place(places: Places) -> None:
    legacy = _workspace(places.root / "my study", "my study")
    assert places.place("my study", None) == legacy


def test_inside_the_root_or_an_allowance_only(places: Places, tmp_path: Path) -> None:
    assert places.place("x", ".reconciler/studies/sub/x") == places.root / "sub" / "x"
    assert places.place("x", str(tmp_path / "allowed" / "x")) == tmp_path / "allowed" / "x"
    for custom in ("/etc", "..", ".", ".reconciler/studies", ".reconciler/studies/../cache"):
        with pytest.raises(PlacementError, match="not inside the studies root"):
            places.place("x", custom)


def test_a_link_out_of_the_root_is_outside(places: Places, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (places.root / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PlacementError, match="not inside the studies root"):
        places.place("x", ".reconciler/studies/link/x")
    with pytest.raises(PlacementError, match="symbolic link"):
        places.place("link", None)  # the default place itself planted as a link


def test_never_another_studys_workspace_nor_inside_one(places: Places) -> None:
    _workspace(places.root / "victim", "victim")
    with pytest.raises(PlacementError, match="workspace of study 'victim', not 'thief'"):
        places.place("thief", ".reconciler/studies/victim")
    with pytest.raises(PlacementError, match=r"inside .*victim, the workspace of study 'victim'"):
        places.place("thief", ".reconciler/studies/victim/deeper")
    assert places.place("victim", None) == places.root / "victim"  # its own: fine
