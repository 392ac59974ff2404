"""A Telegram Bot API stand-in (https://core.telegram.org/bots/api): the methods the hub
calls, with the envelopes, status codes and `retry_after` the real one uses, recording every
call. Accepts JSON, form-encoded (what python-telegram-bot sends: each value JSON-encoded)
and multipart bodies."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import serve


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float


@dataclass
class TelegramCloud:
    token: str = "123456:TEST-token"
    calls: list[Call] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # file_id -> bytes
    # Answers forced on the next sendMessage calls: (status, body).
    failures: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    blocked: set[str] = field(default_factory=set)  # chats that blocked the bot
    delay_s: float = 0.0  # latency of every call, as a far cloud has
    runner: web.AppRunner | None = None
    port: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Per chat: when each delivered message arrived, and who waits for the next one.
    _arrivals: dict[str, list[float]] = field(default_factory=dict)
    _arrived: dict[str, asyncio.Event] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> TelegramCloud:
        app = web.Application(client_max_size=50 << 20)
        app.router.add_route("*", "/bot{token}/{method}", self._method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self.runner, self.port = await serve(app)
        return self

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    # ------------------------------------------------------------------ what tests read

    def sent(self, chat_id: int | str | None = None) -> list[dict[str, Any]]:
        """sendMessage calls that succeeded, oldest first."""
        return [
            c.params
            for c in self.calls
            if c.method == "sendmessage"
            and c.params.get("_ok")
            and (chat_id is None or str(c.params.get("chat_id")) == str(chat_id))
        ]

    def texts(self, chat_id: int | str) -> list[str]:
        return [str(p.get("text", "")) for p in self.sent(chat_id)]

    async def wait_texts(self, chat_id: int | str, count: int, within: float = 10) -> list[str]:
        deadline = time.monotonic() + within
        while len(self.texts(chat_id)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {count} messages to {chat_id}; got "
                    f"{self.texts(chat_id)}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await self._changed.wait()
        return self.texts(chat_id)

    async def delivered_after(self, chat_id: int | str, after: float, within: float = 30) -> float:
        """When (monotonic) the first message delivered to `chat_id` at or after `after`
        arrived. Waits on the chat's own event: a load generator that polled the whole call
        list would take the CPU it measures."""
        chat = str(chat_id)
        async with asyncio.timeout(within):
            while True:
                found = next((t for t in self._arrivals.get(chat, ()) if t >= after), None)
                if found is not None:
                    return found
                event = self._arrived.setdefault(chat, asyncio.Event())
                event.clear()
                await event.wait()

    def add_photo(self, file_id: str, data: bytes) -> None:
        self.files[file_id] = data

    # ------------------------------------------------------------------ the API

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            params.update(await request.json())
        elif request.can_read_body:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    try:
                        params[key] = json.loads(value)
                    except ValueError:
                        params[key] = value
        return params

    @staticmethod
    def _error(status: int, description: str, **parameters: Any) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=status)

    async def _method(self, request: web.Request) -> web.Response:
        method = request.match_info["method"].lower()
        params = await self._params(request)
        call = Call(method, params, time.monotonic())
        self.calls.append(call)
        self._changed.set()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        if method == "getme":
            return self._ok({"id": 1, "is_bot": True, "first_name": "IOC", "username": "ioc_bot"})
        if method == "sendmessage":
            answer = self._send_message(params)
            if params.get("_ok"):
                chat = str(params.get("chat_id", ""))
                self._arrivals.setdefault(chat, []).append(call.at)
                self._arrived.setdefault(chat, asyncio.Event()).set()
            return answer
        if method == "answercallbackquery":
            return self._ok(True)
        if method == "getfile":
            file_id = str(params.get("file_id", ""))
            if file_id not in self.files:
                return self._error(400, "Bad Request: invalid file_id")
            return self._ok(
                {
                    "file_id": file_id,
                    "file_unique_id": f"u{file_id}",
                    "file_size": len(self.files[file_id]),
                    "file_path": f"photos/{file_id}.jpg",
                }
            )
        return self._error(404, "Not Found: method not found")

    def _send_message(self, params: dict[str, Any]) -> web.Response:
        text = str(params.get("text", ""))
        chat = str(params.get("chat_id", ""))
        if self.failures:
            status, body = self.failures.pop(0)
            return web.json_response(body, status=status)
        if chat in self.blocked:
            return self._error(403, "Forbidden: bot was blocked by the user")
        if not text or len(text) > 4096:
            return self._error(400, "Bad Request: message text is empty or too long")
        params["_ok"] = True
        self._changed.set()
        return self._ok(
            {
                "message_id": next(self._ids),
                "date": int(time.time()),
                "chat": {"id": int(chat), "type": "private"},
                "text": text,
            }
        )

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        file_id = request.match_info["path"].rsplit("/", 1)[-1].removesuffix(".jpg")
        data = self.files.get(file_id)
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/jpeg")


def update_factory() -> Any:
    """Builds Telegram updates as the cloud posts them to the webhook."""
    counter = itertools.count(1000)

    def user(chat: int, language: str = "vi") -> dict[str, Any]:
        return {"id": chat, "is_bot": False, "first_name": "Citizen", "language_code": language}

    def message(chat: int, **content: Any) -> dict[str, Any]:
        uid = next(counter)
        return {
            "update_id": uid,
            "message": {
                "message_id": uid,
                "from": user(chat),
                "chat": {"id": chat, "type": "private", "first_name": "Citizen"},
                "date": int(time.time()),
                **content,
            },
        }

    def callback(chat: int, data: str) -> dict[str, Any]:
        uid = next(counter)
        return {
            "update_id": uid,
            "callback_query": {
                "id": f"cb{uid}",
                "from": user(chat),
                "chat_instance": "1",
                "data": data,
                "message": {
                    "message_id": 1,
                    "date": int(time.time()),
                    "chat": {"id": chat, "type": "private"},
                    "text": "…",
                },
            },
        }

    class Updates:
        @staticmethod
        def text(chat: int, text: str) -> dict[str, Any]:
            return message(chat, text=text)

        @staticmethod
        def photo(chat: int, file_id: str, caption: str = "") -> dict[str, Any]:
            sizes = [
                {"file_id": f"{file_id}-small", "file_unique_id": "s", "width": 90, "height": 90},
                {"file_id": file_id, "file_unique_id": "b", "width": 800, "height": 600},
            ]
            extra = {"caption": caption} if caption else {}
            return message(chat, photo=sizes, **extra)

        @staticmethod
        def location(chat: int, lat: float, lon: float) -> dict[str, Any]:
            return message(chat, location={"latitude": lat, "longitude": lon})

        @staticmethod
        def sticker(chat: int) -> dict[str, Any]:
            return message(
                chat,
                sticker={
                    "file_id": "st",
                    "file_unique_id": "st",
                    "type": "regular",
                    "width": 512,
                    "height": 512,
                    "is_animated": False,
                    "is_video": False,
                },
            )

        @staticmethod
        def button(chat: int, data: str) -> dict[str, Any]:
            return callback(chat, data)

    return Updates()
