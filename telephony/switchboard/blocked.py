"""Numbers barred from the 1022 hotline (prank and abusive callers): a plain text file, one
number per line (`#` starts a comment), re-read when it changes — supervisors edit it without
restarting anything. Emergency numbers are never barred (telephony.agi.lookups)."""

from __future__ import annotations

import logging
from pathlib import Path

from telephony.numbers import normalise_msisdn

logger = logging.getLogger(__name__)


class BlockedNumbers:
    def __init__(self, *, path: Path) -> None:
        self._path = path
        self._stamp: float | None = None
        self._numbers: frozenset[str] = frozenset()

    def _load(self) -> frozenset[str]:
        try:
            stamp = self._path.stat().st_mtime
        except FileNotFoundError:
            self._stamp, self._numbers = None, frozenset()
            return self._numbers
        if stamp != self._stamp:
            numbers = set()
            for lineno, line in enumerate(self._path.read_text("utf-8").splitlines(), 1):
                text = line.split("#", 1)[0].strip()
                if not text:
                    continue
                number = normalise_msisdn(text)
                if number is None:
                    logger.warning("%s:%d: not a phone number: %r", self._path, lineno, text)
                else:
                    numbers.add(number)
            self._stamp, self._numbers = stamp, frozenset(numbers)
        return self._numbers

    async def __call__(self, number: str) -> bool:
        return number in self._load()
