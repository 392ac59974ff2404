"""Rasa's NLU training format read back into plain examples (text, intent, entities): for the
held-out measurements and the tests. Pure; only the markup the project uses:
`[text](entity)`, `[text](entity:value)` and `[text]{"entity": ..., "value": ...}`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_MARKUP = re.compile(r"\[(?P<text>[^\]]+)\](?:\((?P<short>[^)]+)\)|(?P<json>\{[^}]*\}))")


@dataclass(frozen=True)
class Example:
    text: str
    intent: str
    entities: list[dict[str, Any]] = field(default_factory=list)


def parse_example(line: str, intent: str) -> Example:
    text, entities, pos = "", [], 0
    for m in _MARKUP.finditer(line):
        text += line[pos : m.start()]
        shown = m.group("text")
        if m.group("json"):
            meta = json.loads(m.group("json"))
            name, value = meta["entity"], meta.get("value", shown)
        else:
            name, _, value = m.group("short").partition(":")
            value = value or shown
        entities.append(
            {"entity": name, "value": value, "start": len(text), "end": len(text) + len(shown)}
        )
        text += shown
        pos = m.end()
    return Example(text + line[pos:], intent, entities)


def load_examples(path: Path) -> list[Example]:
    doc = yaml.safe_load(path.read_text("utf-8")) or {}
    out = []
    for block in doc.get("nlu", []):
        if "intent" not in block:
            continue
        for line in str(block.get("examples", "")).splitlines():
            line = line.strip()
            if line.startswith("- "):
                out.append(parse_example(line[2:].strip(), block["intent"]))
    return out
