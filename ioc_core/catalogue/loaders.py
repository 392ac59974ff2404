"""Read the catalogue's source data (pure: files in, rows out). The service writes them.

Areas come from the maintained `vietnam-provinces` dataset (post-2025: province -> ward/commune)
or from any JSON tree in IOC_AREA_FILE (e.g. the pre-2025 province -> district -> commune
structure): nothing here assumes a number of levels.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ioc_core.errors import ValidationFailed

TRACKS = ("timed", "immediate")
PRIORITIES = ("low", "normal", "high", "urgent")


@dataclass(frozen=True)
class CategoryRow:
    code: str
    parent_code: str | None
    group_code: str
    name_vi: str
    name_en: str
    track: str
    deadline_days: int | None
    priority: str
    keywords: str
    description_vi: str
    description_en: str
    sort: int


@dataclass(frozen=True)
class AreaRow:
    code: str
    parent_code: str | None
    level: int
    kind: str
    name: str
    codename: str


def _data(name: str) -> Any:
    return json.loads(resources.files("ioc_core.data").joinpath(name).read_text("utf-8"))


def flatten_categories(nodes: Sequence[Mapping[str, Any]]) -> list[CategoryRow]:
    """Depth-first rows; children inherit track, deadline and priority from their parent."""
    rows: list[CategoryRow] = []

    def walk(node: Mapping[str, Any], parent: CategoryRow | None) -> None:
        code = str(node["code"])
        track = node.get("track") or (parent.track if parent else "timed")
        if track not in TRACKS:
            raise ValidationFailed(f"category {code}: track must be one of {TRACKS}")
        priority = node.get("priority") or (parent.priority if parent else "normal")
        if priority not in PRIORITIES:
            raise ValidationFailed(f"category {code}: priority must be one of {PRIORITIES}")
        days = node.get("deadline_days", parent.deadline_days if parent else None)
        if track == "timed" and days is None:
            raise ValidationFailed(f"category {code}: a timed category needs deadline_days")
        row = CategoryRow(
            code=code,
            parent_code=parent.code if parent else None,
            group_code=parent.group_code if parent else code,
            name_vi=node["name_vi"],
            name_en=node["name_en"],
            track=track,
            deadline_days=None if track == "immediate" else int(days),
            priority=priority,
            keywords=node.get("keywords", ""),
            description_vi=node.get("description_vi", ""),
            description_en=node.get("description_en", ""),
            sort=len(rows),
        )
        rows.append(row)
        for child in node.get("children", ()):
            walk(child, row)

    for node in nodes:
        walk(node, None)
    return rows


def default_categories() -> list[CategoryRow]:
    return flatten_categories(_data("categories.json")["categories"])


def default_agencies() -> list[dict[str, Any]]:
    return list(_data("agencies.json")["agencies"])


def areas_from_tree(nodes: Iterable[Mapping[str, Any]]) -> Iterator[AreaRow]:
    """Generic tree: `{code, name, kind, codename?, children: [...]}` to any depth."""

    def walk(node: Mapping[str, Any], parent: str | None, level: int) -> Iterator[AreaRow]:
        yield AreaRow(
            code=str(node["code"]),
            parent_code=parent,
            level=level,
            kind=str(node.get("kind", "")),
            name=str(node["name"]),
            codename=str(node.get("codename", "")),
        )
        for child in node.get("children", ()):
            yield from walk(child, str(node["code"]), level + 1)

    for node in nodes:
        yield from walk(node, None, 1)


def areas_from_vietnam_provinces(provinces: Sequence[str]) -> list[AreaRow]:
    """Official GSO codes: provinces two digits, wards/communes five digits."""
    import vietnam_provinces  # heavy JSON; only when loading

    data = json.loads(Path(vietnam_provinces.NESTED_DIVISIONS_JSON_PATH).read_text("utf-8"))
    wanted = None if (not provinces or "all" in provinces) else {int(p) for p in provinces}
    known = {int(p["code"]) for p in data}
    if wanted is not None and (missing := wanted - known):
        raise ValidationFailed(
            f"IOC_AREA_PROVINCES names unknown province codes: {sorted(missing)}",
            details={"known": sorted(known)},
        )
    tree = []
    for p in data:
        if wanted is not None and int(p["code"]) not in wanted:
            continue
        tree.append(
            {
                "code": f"{int(p['code']):02d}",
                "name": p["name"],
                "kind": p["division_type"],
                "codename": p.get("codename", ""),
                "children": [
                    {
                        "code": f"{int(w['code']):05d}",
                        "name": w["name"],
                        "kind": w["division_type"],
                        "codename": w.get("codename", ""),
                    }
                    for w in p.get("wards", ())
                ],
            }
        )
    return list(areas_from_tree(tree))


def areas_from_file(path: str | Path) -> list[AreaRow]:
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValidationFailed(f"cannot read area file {path}: {exc}") from exc
    nodes = data["areas"] if isinstance(data, dict) else data
    return list(areas_from_tree(nodes))
