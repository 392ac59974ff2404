"""Reading multipart and query input into checked values (4xx naming the problem)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from ioc_core.errors import MalformedRequest, PayloadTooLarge, UnsupportedMedia, ValidationFailed
from ioc_core.http import refuse_forbidden_text
from ioc_core.incidents.attachments import Upload

MAX_FIELD = 64 * 1024


class _Budget:
    """Bytes left for the whole body; aiohttp's client_max_size does not cover streamed
    multipart reads, so every part is charged here."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def charge(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise PayloadTooLarge(
                f"request body is too large (limit {self.limit} bytes)",
                details={"limit": self.limit},
            )


async def _read_limited(
    part: BodyPartReader, limit: int, name: str, budget: _Budget, *, error_id: str
) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        budget.charge(len(chunk))
        if size > limit:
            raise PayloadTooLarge(
                f"{name} is larger than {limit} bytes",
                details={"part": name, "limit": limit},
                error_id=error_id,
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def read_multipart(
    request: web.Request, *, max_file: int, max_files: int, max_body: int
) -> tuple[dict[str, str], list[Upload]]:
    """Fields and files of a multipart body. The whole body, each part and the number of
    files are capped while streaming, so nothing past a limit is ever buffered."""
    if request.content_type != "multipart/form-data":
        raise UnsupportedMedia(
            f"expected multipart/form-data, got {request.content_type or 'nothing'}"
        )
    if request.content_length is not None and request.content_length > max_body:
        raise PayloadTooLarge(
            f"request body is too large (limit {max_body} bytes)", details={"limit": max_body}
        )
    budget = _Budget(max_body)
    fields: dict[str, str] = {}
    uploads: list[Upload] = []
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise MalformedRequest("nested multipart is not supported")
            if not part.name:
                # A part without `Content-Disposition: form-data; name=...` (or with no headers
                # at all) names nothing the API takes; refused rather than filed under "".
                raise MalformedRequest(
                    "every multipart part needs Content-Disposition: form-data; name=...",
                    details={"part": len(fields) + len(uploads)},
                    error_id="malformed-multipart",
                )
            refuse_forbidden_text(part.name, "form field name")
            if part.filename is not None:
                refuse_forbidden_text(part.filename, f"{part.name} (file name)")
                if len(uploads) >= max_files:
                    raise ValidationFailed(
                        f"at most {max_files} photos per request",
                        details={"limit": max_files},
                        error_id="too-many-attachments",
                    )
                data = await _read_limited(
                    part, max_file, part.filename, budget, error_id="attachment-too-large"
                )
                uploads.append(Upload(filename=part.filename, data=data))
            else:
                raw = await _read_limited(
                    part, MAX_FIELD, part.name, budget, error_id="payload-too-large"
                )
                fields[part.name] = raw.decode("utf-8")
                refuse_forbidden_text(fields[part.name], part.name)
    except HttpProcessingError as exc:
        # A part's headers that HTTP's grammar refuses (control bytes in a name or value):
        # aiohttp raises its own parser error here, which is no ValueError (it would be a 500).
        raise MalformedRequest(
            f"malformed multipart part headers: {exc.message}", error_id="malformed-multipart"
        ) from None
    except (ValueError, UnicodeDecodeError, AssertionError) as exc:
        raise MalformedRequest(
            f"malformed multipart body: {exc}", error_id="malformed-multipart"
        ) from None
    return fields, uploads


async def read_form(request: web.Request, *, max_body: int) -> dict[str, str]:
    """A small form (urlencoded or multipart without files), capped at `max_body` while
    streaming: aiohttp's `post()` would buffer up to the app's 25 MB body limit first."""
    if request.content_type == "multipart/form-data":
        try:
            fields, _ = await read_multipart(request, max_file=0, max_files=0, max_body=max_body)
        except ValidationFailed as exc:
            if exc.error_id != "too-many-attachments":
                raise
            raise ValidationFailed(
                "this form takes no files", details={"field": "file"}, error_id="files-not-taken"
            ) from None
        return fields
    if request.content_length is not None and request.content_length > max_body:
        raise PayloadTooLarge(
            f"request body is too large (limit {max_body} bytes)", details={"limit": max_body}
        )
    budget = _Budget(max_body)
    raw = bytearray()
    while chunk := await request.content.readany():
        budget.charge(len(chunk))
        raw += chunk
    try:
        return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequest(f"malformed form body: {exc}", error_id="malformed-form") from None
