"""Report bodies for the load: valid, like a citizen's web report, each at its own point.

Points are drawn uniformly over Vietnam's bounding box (about 1,600 x 700 km), so two reports
land within the 150 m duplicate radius with negligible probability: duplicate detection runs
its query for every report but merges (almost) nothing, as for a city's unrelated reports.
`bench/post_report.lua` draws from the same box.
"""

from __future__ import annotations

import json
import random
from typing import Any

CATEGORY = "moi_truong.rac_thai"
AREA_CODE = "25210"  # in province 75, the default IOC_AREA_PROVINCES
LAT_RANGE = (8.5, 23.0)
LON_RANGE = (102.5, 109.0)


def report_body(rng: random.Random) -> dict[str, Any]:
    return {
        "category": CATEGORY,
        "title": "Rác thải đổ trộm",
        "description": "Rác thải đổ trộm đầu hẻm 12 (benchmark)",
        "channel": "web",
        "location": {
            "lat": round(rng.uniform(*LAT_RANGE), 6),
            "lon": round(rng.uniform(*LON_RANGE), 6),
            "address": "Hẻm 12, Đồng Xoài",
            "area_code": AREA_CODE,
        },
        "reporter": {
            "name": "Nguyễn Văn An",
            "phone": "0912345678",
            "email": "an@example.vn",
            "channel_user_id": "zalo-123",
        },
    }


def report_json(rng: random.Random) -> bytes:
    return json.dumps(report_body(rng), ensure_ascii=False).encode()
