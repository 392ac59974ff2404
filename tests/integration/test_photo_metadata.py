"""Photos are stored and served without the metadata a phone writes into them (issue 11, item 4).

The test photos are built with Pillow and carry what a phone's camera leaves in a file: EXIF
with the GPS position, make, model and orientation, XMP, a JPEG comment, PNG text chunks.
What the hub stores and serves must carry none of it, with the orientation applied to the
pixels; the report's location stays what the reporter sent, never the photo's GPS position.
"""

from __future__ import annotations

import json
import zlib
from io import BytesIO
from typing import Any

from aiohttp import FormData
from PIL import ExifTags, Image, PngImagePlugin
from sqlalchemy import func, select

from ioc_core.incidents.models import Attachment
from ioc_core.runtime import Core
from tests.helpers import auth, make_token, report

SENTINELS = (
    b"SENTINEL-MAKE",
    b"SENTINEL-MODEL",
    b"SENTINEL-COMMENT",
    b"SENTINEL-XMP",
    b"SENTINEL-TEXT",
    b"SENTINEL-ITXT",
)
# Where the photo was taken (EXIF GPS): 10°45'30" N, 106°40' E, in Ho Chi Minh City, far from
# where the report says the problem is (Đồng Xoài, 11.53 N).
GPS_LAT = (10.0, 45.0, 30.0)
GPS_LON = (106.0, 40.0, 0.0)
SIZE = (40, 20)  # landscape pixels; EXIF orientation 6 says "rotate 90° to view": 20 x 40


def phone_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SENTINEL-MAKE"
    exif[ExifTags.Base.Model] = "SENTINEL-MODEL"
    exif[ExifTags.Base.Orientation] = 6
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = GPS_LAT
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = GPS_LON
    return exif


def phone_jpeg() -> bytes:
    buf = BytesIO()
    Image.new("RGB", SIZE, (200, 30, 30)).save(
        buf,
        format="JPEG",
        exif=phone_exif(),
        comment=b"SENTINEL-COMMENT",
        xmp=b"<x:xmpmeta>SENTINEL-XMP</x:xmpmeta>",
    )
    return buf.getvalue()


def png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "SENTINEL-TEXT")
    info.add_itxt("Description", "SENTINEL-ITXT")
    buf = BytesIO()
    Image.new("RGBA", SIZE, (30, 200, 30, 128)).save(
        buf, format="PNG", pnginfo=info, exif=phone_exif()
    )
    return buf.getvalue()


def webp_with_exif() -> bytes:
    buf = BytesIO()
    Image.new("RGB", SIZE, (30, 30, 200)).save(
        buf, format="WEBP", exif=phone_exif(), xmp=b"<x:xmpmeta>SENTINEL-XMP</x:xmpmeta>"
    )
    return buf.getvalue()


def assert_clean(data: bytes, fmt: str, what: str) -> None:
    leaked = [s for s in SENTINELS if s in data]
    assert not leaked, (what, leaked)
    assert b"Exif\x00\x00" not in data and b"eXIf" not in data, what
    with Image.open(BytesIO(data)) as img:
        assert img.format == fmt, what
        assert dict(img.getexif()) == {}, (what, dict(img.getexif()))
        assert not {"exif", "xmp", "XML:com.adobe.xmp", "comment", "Author", "Description"} & set(
            img.info
        ), (what, img.info)
        assert img.size == (SIZE[1], SIZE[0]), (what, "orientation applied to the pixels")


async def test_defect_04_photos_lose_their_metadata(client: Any, core: Core) -> None:
    token = await make_token(core, "service", name="zalo")
    jpeg = phone_jpeg()
    form = FormData()
    form.add_field("report", json.dumps(report()), content_type="application/json")
    form.add_field("photo", jpeg, filename="IMG_0001.jpg", content_type="image/jpeg")
    r = await client.post("/api/v1/incidents", data=form, headers=auth(token))
    assert r.status == 201, await r.text()
    inc = await r.json()
    # The location is what the reporter sent, not where the photo was taken.
    assert (inc["location"]["lat"], inc["location"]["lon"]) == (11.5349, 106.8832)

    form = FormData()
    form.add_field("photo", png_with_text(), filename="chup.png", content_type="image/png")
    form.add_field("photo", webp_with_exif(), filename="chup.webp", content_type="image/webp")
    r = await client.post(
        f"/api/v1/incidents/{inc['id']}/attachments", data=form, headers=auth(token)
    )
    assert r.status == 201, await r.text()
    attachments = (await r.json())["attachments"]
    assert [a["content_type"] for a in attachments] == ["image/jpeg", "image/png", "image/webp"]

    async with core.sessions() as s:
        stored = {a.id: a for a in (await s.scalars(select(Attachment))).all()}
    for a, fmt in zip(attachments, ("JPEG", "PNG", "WEBP"), strict=True):
        served = await client.get(a["url"])  # verified or not, this is what the public gets
        assert served.status == 200
        data = await served.read()
        assert_clean(data, fmt, f"served {a['filename']}")
        on_disk = (core.settings.attachments_dir / stored[a["id"]].path).read_bytes()
        assert on_disk == data, a["filename"]
        assert (a["width"], a["height"], a["size"]) == (SIZE[1], SIZE[0], len(data))
    assert jpeg != on_disk


def damaged_png() -> bytes:
    """A PNG whose chunks are all well formed (lengths, CRCs) but whose compressed pixels are
    garbage: it passes Pillow's `verify()`, only decoding the pixels finds the damage."""
    data = bytearray(png_with_text())
    at = data.index(b"IDAT") - 4
    length = int.from_bytes(data[at : at + 4], "big")
    start, end = at + 8, at + 8 + length
    data[start + 2 : end] = bytes(0xA5 for _ in range(end - start - 2))  # keep the zlib header
    data[end : end + 4] = zlib.crc32(bytes(data[at + 4 : end])).to_bytes(4, "big")
    return bytes(data)


async def test_defect_04_damaged_photos_are_refused(client: Any, core: Core) -> None:
    """A photo that looks whole but whose pixels cannot be decoded is refused with a 4xx naming
    the file, and nothing is stored (it could not have been cleaned either)."""
    token = await make_token(core, "service", name="zalo")
    form = FormData()
    form.add_field("report", json.dumps(report()), content_type="application/json")
    form.add_field("photo", damaged_png(), filename="hong.png", content_type="image/png")
    r = await client.post("/api/v1/incidents", data=form, headers=auth(token))
    body = await r.json()
    assert r.status == 415, body
    assert body["error_id"] == "not-an-image" and body["details"]["file"] == "hong.png", body
    async with core.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Attachment)) == 0
    assert not [p for p in core.settings.attachments_dir.rglob("*") if p.is_file()]
