"""Photo attachments: checked (real image, allowed type, size, pixel count) before anything
is written; stored under IOC_DATA_DIR/attachments with an atomic rename."""

from __future__ import annotations

import hashlib
import io
import os
import re
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ioc_core.errors import PayloadTooLarge, UnsupportedMedia, ValidationFailed

ALLOWED = {
    "JPEG": ("image/jpeg", ".jpg"),
    "PNG": ("image/png", ".png"),
    "WEBP": ("image/webp", ".webp"),
}
MAX_PIXELS = 60_000_000  # bigger than any phone camera; smaller than a decompression bomb


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
        raise UnsupportedMedia(
            f"{upload.filename or 'file'} is not a readable image (JPEG, PNG or WebP)",
            details={
                "file": upload.filename,
                "reason": str(exc)[:200],
                "allowed": sorted(ct for ct, _ in ALLOWED.values()),
            },
            error_id="not-an-image",
        ) from None
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
    return Photo(
        filename=_safe_name(upload.filename),
        content_type=content_type,
        extension=ext,
        size=size,
        sha256=hashlib.sha256(upload.data).hexdigest(),
        width=width,
        height=height,
        data=upload.data,
    )


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
