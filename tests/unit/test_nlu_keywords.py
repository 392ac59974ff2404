"""The keyword safety net: emergencies found with or without diacritics; categories suggested."""

from __future__ import annotations

from typing import Any

import pytest

from ioc_core.api.client import leaf_keywords
from ioc_core.catalogue.loaders import default_categories
from nlu.keywords import emergency_service, padded, suggest_category


@pytest.mark.parametrize(
    ("text", "service"),
    [
        ("Cháy nhà ở đường Trần Hưng Đạo!", "114"),
        ("chay nha o duong tran hung dao", "114"),  # typed without diacritics
        ("CÓ KHÓI BỐC LÊN TỪ KHO", "114"),
        ("Có người bất tỉnh, cần xe cấp cứu", "115"),
        ("co nguoi bat tinh", "115"),
        ("Bị cướp giật điện thoại", "113"),
        ("There is a fire in the market", "114"),
        ("Someone is unconscious, send an ambulance", "115"),
        ("cháy và có người bị thương", "114"),  # several: fire first
        ("Đèn đường hỏng ở phường Đồng Xoài", None),
        ("chạy bộ buổi sáng", None),  # with diacritics, "chạy" (run) is not "cháy" (fire)
        ("Rác thải đổ trộm đầu hẻm", None),  # illegal dumping, not a theft
        ("nhà tôi bị trộm", "113"),
        ("tôi muốn đánh giá 5 sao", None),  # "đánh" as in rating, not a beating
        ("", None),
    ],
)
def test_emergency_pre_check(text: str, service: str | None) -> None:
    assert emergency_service(text) == service


def test_folding() -> None:
    assert padded("Đồng Xoài, BÌNH PHƯỚC!") == " dong xoai binh phuoc "
    assert padded("Đồng Xoài!", keep_marks=True) == " đồng xoài "
    # Without diacritics "chay" is run, flow or fire: alone it is not enough ...
    assert emergency_service("chay bo buoi sang") is None
    assert emergency_service("nuoc chay lenh lang") is None
    assert emergency_service("thoi khoi chat bot") is None
    # ... beside another fire word, or in a fire phrase, it is.
    assert emergency_service("nha toi bi chay") == "114"
    assert emergency_service("chay lon co khoi den") == "114"
    # One word's everyday reading does not hide another emergency ("no": nó, nổ).
    assert emergency_service("vua bi cuop, tui no con o gan day") == "113"


KEYWORDS = {
    "moi_truong.rac_thai": ["rác", "rác thải", "đổ trộm"],
    "ha_tang.chieu_sang": ["đèn đường", "chiếu sáng"],
    "giao_thong.tai_nan": ["tai nạn", "va chạm"],
}


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Rác thải đổ trộm đầu hẻm 12", "moi_truong.rac_thai"),
        ("den duong hong tu toi qua", "ha_tang.chieu_sang"),
        ("Va chạm xe máy ở ngã tư", "giao_thong.tai_nan"),
        ("Xin hỏi thủ tục cấp giấy phép", None),
    ],
)
def test_category_suggestion(text: str, code: str | None) -> None:
    assert suggest_category(text, KEYWORDS) == code


CATALOGUE = leaf_keywords(
    [
        {"code": c.code, "parent": c.parent_code, "keywords": c.keywords}
        for c in default_categories()
    ]
)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("There in the fire in the market, clean and the fire truck.", "chay_no.chay"),
        ("Có người bất tỉnh trước cổng chợ", "y_te.cap_cuu"),
        ("rác thải đổ trộm đầu hẻm", "moi_truong.rac_thai"),
        ("đèn đường trước nhà tôi bị tắt cả tuần", "ha_tang.chieu_sang"),
        ("kẹt xe kéo dài ở vòng xoay", "giao_thong.un_tac"),
        ("I would like to ask about my dossier", None),  # nothing clear: the service's own
    ],
)
def test_suggestion_from_the_default_catalogue(text: str, code: str | None) -> None:
    assert suggest_category(text, CATALOGUE) == code


def test_only_leaf_categories_with_keywords_are_suggested() -> None:
    rows: list[dict[str, Any]] = [
        {"code": "a", "parent": None, "keywords": "x"},
        {"code": "a.b", "parent": "a", "keywords": "y, z"},
        {"code": "a.c", "parent": "a", "keywords": ""},
        {"code": "d", "parent": None, "keywords": ["w"]},  # the REST API's list form
    ]
    assert leaf_keywords(rows) == {"a.b": ["y", "z"], "d": ["w"]}
