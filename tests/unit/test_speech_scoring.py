"""The speech benchmark's scoring: word error rate and keyword recall (table-driven)."""

from __future__ import annotations

import pytest

from bench.speech import keyword_hits, wer


@pytest.mark.parametrize(
    ("reference", "hypothesis", "rate"),
    [
        ("There is a fire.", "there is a fire", 0.0),  # case and punctuation do not count
        ("There is a fire in the market", "There in the fire in the market", 2 / 7),
        ("cháy nhà", "chạy nhà", 0.5),  # a wrong mark is a wrong word
        ("cháy nhà", "", 1.0),
        ("a b", "a b c d", 1.0),  # insertions count
    ],
)
def test_word_error_rate(reference: str, hypothesis: str, rate: float) -> None:
    assert wer(reference, hypothesis) == pytest.approx(rate)


@pytest.mark.parametrize(
    ("keywords", "text", "exact", "folded"),
    [
        (("cháy", "cứu hỏa"), "Cháy nhà, gọi cứu hỏa!", 2, 2),
        (("cháy", "cứu hỏa"), "chay nha, goi cuu hoa", 0, 2),
        (("cháy",), "chạy đi", 0, 1),  # without marks "chạy" looks like "cháy"
        (("street light",), "the street lights", 0, 0),  # whole words only
        (("fire",), "a fire truck", 1, 1),
    ],
)
def test_keyword_recall(keywords: tuple[str, ...], text: str, exact: int, folded: int) -> None:
    assert keyword_hits(keywords, text, marks=True) == exact
    assert keyword_hits(keywords, text, marks=False) == folded
