"""Photo attachments: checked (real image, allowed type, size, pixel count) and re-encoded
without metadata before anything is written; stored under IOC_DATA_DIR/attachments with an
atomic rename.

Every photo the hub stores comes through `check_photo` (REST uploads, and the bots' chat
photos through the core API), so this is the one place where a phone's EXIF (GPS position,
device make and model, time), XMP, IPTC, JPEG comments and PNG text chunks are dropped: a
verified incident's photos are public. The position a photo was taken at never becomes the
report's location; that is only what the reporter sent as the location.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from ioc_core.errors import PayloadTooLarge, UnsupportedMedia, ValidationFailed

ALLOWED = {
    "JPEG": ("image/jpeg", ".jpg"),
    "PNG": ("image/png", ".png"),
    "WEBP": ("image/webp", ".webp"),
}
MAX_PIXELS = 60_000_000  # bigger than any phone camera; smaller than a decompression bomb
# What survives re-encoding: the colour profile (colours, not a person or a device's position)
# and PNG transparency. Everything else in `Image.info` (exif, xmp, comment, text chunks,
# dpi...) is dropped.
KEEP_INFO = ("icc_profile", "transparency")
# Re-encoding settings: close to what phones produce, so a photo neither grows nor blurs much.
SAVE_OPTIONS: dict[str, dict[str, object]] = {
    "JPEG": {"quality": 90},
    "PNG": {},
    "WEBP": {"quality": 90},
}


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


@dataclass(frozen=True)
class Photo:
    filename: str
    content_type: str
    extension: str
    size: int
    sha256: str
    width: int
    height: int
    data: bytes


def _safe_name(name: str) -> str:
    base = os.path.basename(name or "photo")
    return re.sub(r"[^\w.\-]+", "_", base)[:120] or "photo"


def _unreadable(upload: Upload, exc: Exception) -> UnsupportedMedia:
    return UnsupportedMedia(
        f"{upload.filename or 'file'} is not a readable image (JPEG, PNG or WebP)",
        details={
            "file": upload.filename,
            "reason": str(exc)[:200],
            "allowed": sorted(ct for ct, _ in ALLOWED.values()),
        },
        error_id="not-an-image",
    )


def check_photo(upload: Upload, *, max_bytes: int) -> Photo:
    """Raise a 4xx error naming the problem, or return the checked photo."""
    size = len(upload.data)
    if size == 0:
        raise ValidationFailed(
            f"{upload.filename or 'photo'} is empty",
            details={"file": upload.filename},
            error_id="empty-file",
        )
    if size > max_bytes:
        raise PayloadTooLarge(
            f"{upload.filename or 'photo'} is {size} bytes; the limit is {max_bytes}",
            details={"file": upload.filename, "size": size, "limit": max_bytes},
            error_id="attachment-too-large",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(upload.data)) as img:
                fmt, (width, height) = img.format or "", img.size
                if width * height > MAX_PIXELS:
                    raise ValueError("too many pixels")
                img.verify()  # checks the file's structure without decoding every pixel
    except Exception as exc:
        raise _unreadable(upload, exc) from None
    if fmt not in ALLOWED:
        raise UnsupportedMedia(
            f"{upload.filename or 'file'} is {fmt or 'unknown'}; allowed: JPEG, PNG, WebP",
            details={
                "file": upload.filename,
                "format": fmt,
                "allowed": sorted(ct for ct, _ in ALLOWED.values()),
            },
            error_id="not-an-image",
        )
    content_type, ext = ALLOWED[fmt]
    data, width, height = _without_metadata(upload, fmt)
    return Photo(
        filename=_safe_name(upload.filename),
        content_type=content_type,
        extension=ext,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        width=width,
        height=height,
        data=data,
    )


async def check_photos(uploads: Sequence[Upload], *, max_bytes: int) -> list[Photo]:
    """`check_photo` for each upload, off the event loop: decoding and re-encoding a phone
    photo takes a good part of a second of CPU (Pillow releases the GIL meanwhile)."""
    if not uploads:
        return []
    return await asyncio.to_thread(lambda: [check_photo(u, max_bytes=max_bytes) for u in uploads])


def _without_metadata(upload: Upload, fmt: str) -> tuple[bytes, int, int]:
    """The photo decoded and encoded again in its own format with no metadata, the EXIF
    orientation applied to the pixels (the tag that told viewers to rotate it is gone too).
    A file whose pixels cannot be decoded (truncated, damaged) is refused here."""
    try:
        with Image.open(io.BytesIO(upload.data)) as img:
            img.load()
            kept: dict[str | tuple[int, int], Any] = {
                k: img.info[k] for k in KEEP_INFO if k in img.info
            }
            upright = ImageOps.exif_transpose(img)
        upright.info = kept
        options = dict(SAVE_OPTIONS[fmt])
        if "icc_profile" in kept:
            options["icc_profile"] = kept["icc_profile"]
        buf = io.BytesIO()
        upright.save(buf, format=fmt, **options)
    except Exception as exc:
        # The same answer as a file that is no image at all: the pixels cannot be read.
        raise _unreadable(upload, exc) from None
    return buf.getvalue(), upright.width, upright.height


def write_photo(root: Path, incident_id: str, photo: Photo) -> str:
    """Write atomically; returns the path relative to `root`."""
    rel = Path(incident_id[:2]) / incident_id / f"{uuid.uuid4().hex}{photo.extension}"
    final = root / rel
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_suffix(final.suffix + ".part")
    with open(tmp, "wb") as fh:
        fh.write(photo.data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return str(rel)


def remove_files(root: Path, rel_paths: list[str]) -> None:
    """Undo `write_photo` when the transaction that would record the files fails."""
    for rel in rel_paths:
        path = root / rel
        path.unlink(missing_ok=True)
        # write_photo made <id[:2]>/<id>/ for these files; drop the folders it left empty.
        for folder in (path.parent, path.parent.parent):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (other photos of the incident) or already gone
