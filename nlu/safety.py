"""The emergency pre-check: runs on every message before any NLU, so an emergency is never
missed when Rasa is slow, down or wrong. Deliberately eager: showing the emergency numbers
to someone who did not need them costs a line of text; missing a fire costs more.

The matching itself is in nlu/text/emergency.py, which Rasa's own pipeline runs too
(components/precheck.py): Rasa's own dialogue applies the same check."""

from __future__ import annotations

from nlu.text.emergency import INTENT_OF, NUMBER_OF, emergency_number

__all__ = ["INTENT_OF", "NUMBER_OF", "emergency_number"]
