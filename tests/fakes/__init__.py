"""Local stand-ins for clouds the tests cannot reach (Telegram, Zalo): HTTP servers on
127.0.0.1 that speak the parts of the documented APIs the hub uses and record every call.
Also used by the bots benchmark."""

from aiohttp import web


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    """`app` on 127.0.0.1 and a free port: (its runner, the port)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
