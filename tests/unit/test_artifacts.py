"""The artefact cache rebuilds when inputs change, reuses otherwise, never keeps half builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from ioc_core.artifacts import MARKER, ArtifactCache, input_key


def test_key_depends_on_names_values_and_file_contents(tmp_path: Path) -> None:
    f = tmp_path / "pins.txt"
    f.write_text("rasa==3.6.21\n")
    k1 = input_key({"pins": f, "python": "3.10.13"})
    assert k1 == input_key({"python": "3.10.13", "pins": f})  # order does not matter
    f.write_text("rasa==3.6.20\n")
    assert input_key({"pins": f, "python": "3.10.13"}) != k1
    assert input_key({"a": "1"}) != input_key({"b": "1"})


def test_build_once_then_reuse_then_rebuild_when_stale(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    builds: list[Path] = []

    def build(into: Path) -> None:
        builds.append(into)
        (into / "thing").write_text("built")

    a = cache.ensure("model", {"v": "1"}, build)
    assert (a / "thing").read_text() == "built" and (a / MARKER).exists()
    assert cache.ensure("model", {"v": "1"}, build) == a and len(builds) == 1
    b = cache.ensure("model", {"v": "2"}, build)
    assert b != a and len(builds) == 2
    assert not a.exists(), "the stale artefact is removed"


def test_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")

    def broken(into: Path) -> None:
        (into / "half").write_text("x")
        raise RuntimeError("download failed")

    with pytest.raises(RuntimeError):
        cache.ensure("chroot", {"v": "1"}, broken)
    assert not cache.is_fresh("chroot", {"v": "1"})
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [".chroot.lock"]
