"""The 1022 status line's pure parts: keys to a tracking code, and what the caller hears."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from telephony.switchboard.app import status_text, tracking_code

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.mark.parametrize(
    ("entered", "code"),
    [
        ("2026123", "PA-2026-000123"),
        ("20260000123", "PA-2026-000123"),  # leading zeros keyed in too
        ("2026", None),  # a year alone
        ("20260", None),  # number 0 does not exist
        ("1999123", None),  # not a year of this system
        ("", None),
    ],
)
def test_keys_to_a_tracking_code(entered: str, code: str | None) -> None:
    assert tracking_code("PA", entered) == code


def test_what_the_caller_hears() -> None:
    incident = {
        "code": "PA-2026-000123",
        "state": "in_progress",
        "state_label": {"vi": "đang xử lý", "en": "in progress"},
        "due_at": "2026-12-10T16:59:59+00:00",
    }
    assert status_text("vi", incident, LOCAL) == (
        "Phản ánh mã P A, năm 2026, số 123: đang xử lý. Hạn xử lý: ngày 10/12/2026."
    )
    assert status_text("en", incident | {"due_at": None}, LOCAL) == (
        "Report P A, 2026, number 123: in progress."
    )
    assert "Không tìm thấy" in status_text("vi", None, LOCAL)
