"""Reading multipart and query input into checked values (4xx naming the problem)."""

from __future__ import annotations

from typing import Any

from aiohttp import BodyPartReader, web
from pydantic import BaseModel

from ioc_core.errors import MalformedRequest, PayloadTooLarge, UnsupportedMedia
from ioc_core.http import parse_model
from ioc_core.incidents.attachments import Upload

MAX_FIELD = 64 * 1024


async def _read_limited(part: BodyPartReader, limit: int, name: str) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"{name} is larger than {limit} bytes",
                details={"file": name, "limit": limit},
                error_id="attachment-too-large",
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def read_multipart(
    request: web.Request, *, max_file: int
) -> tuple[dict[str, str], list[Upload]]:
    if request.content_type != "multipart/form-data":
        raise UnsupportedMedia(
            f"expected multipart/form-data, got {request.content_type or 'nothing'}"
        )
    fields: dict[str, str] = {}
    uploads: list[Upload] = []
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise MalformedRequest("nested multipart is not supported")
            if part.filename is not None:
                data = await _read_limited(part, max_file, part.filename)
                uploads.append(Upload(filename=part.filename, data=data))
            else:
                raw = await _read_limited(part, MAX_FIELD, part.name or "field")
                fields[part.name or ""] = raw.decode("utf-8")
    except (ValueError, UnicodeDecodeError, AssertionError) as exc:
        raise MalformedRequest(
            f"malformed multipart body: {exc}", error_id="malformed-multipart"
        ) from None
    return fields, uploads


def parse_query(
    request: web.Request, model: type[BaseModel], *, multi: frozenset[str] = frozenset()
) -> Any:
    """Query parameters into `model` (unknown parameters are errors, like unknown fields)."""
    data: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        if key in multi:
            data[key] = [v for raw in values for v in raw.split(",") if v]
        else:
            data[key] = values[-1]
    return parse_model(model, data)
