"""The emergency pre-check: runs on every message before any NLU, so an emergency is never
missed when Rasa is slow, down or wrong. Deliberately eager: showing the emergency numbers
to someone who did not need them costs a line of text; missing a fire costs more."""

from __future__ import annotations

import re

from nlu.keywords import emergency_service

INTENT_OF = {"113": "emergency_police", "114": "emergency_fire", "115": "emergency_medical"}
NUMBER_OF = {intent: number for number, intent in INTENT_OF.items()}
# 113/114/115 written on their own ("gọi 115", "114!!"), not inside a longer number such as a
# phone number, a house number (115/3 Lê Lợi) or a tracking code.
_NUMBER = re.compile(r"(?<![\w/-])(11[345])(?![\w/-])")


def emergency_number(text: str) -> str | None:
    """The emergency number `text` calls for (113 police, 114 fire, 115 ambulance), or None."""
    numbers = _NUMBER.findall(text)
    if numbers:
        return str(numbers[0])
    return emergency_service(text)
