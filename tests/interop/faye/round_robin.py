"""An HTTP proxy sending each request to the next of several backends in turn (a load balancer
without sticky sessions), for long-polling clients. Prints "listening PORT" once it serves.

Usage: python round_robin.py [--page FILE] BACKEND_URL [BACKEND_URL ...]
(--page: serve FILE at / itself, for a browser test page)
"""

from __future__ import annotations

import itertools
import socket
import sys
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, web


def main() -> None:
    args = sys.argv[1:]
    page = None
    if args[:1] == ["--page"]:
        page = Path(args[1]).read_text()
        args = args[2:]
    backends = itertools.cycle(args)
    session: ClientSession | None = None

    async def forward(request: web.Request) -> web.Response:
        nonlocal session
        if session is None:
            session = ClientSession(timeout=ClientTimeout(total=120))
        base = next(backends)
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type",)}
        async with session.request(
            request.method, base + request.path_qs, data=await request.read(), headers=headers
        ) as response:
            body = await response.read()
            kept = {"Content-Type": response.headers.get("Content-Type", "application/json")}
            return web.Response(status=response.status, body=body, headers=kept)

    app = web.Application()
    if page is not None:
        app.router.add_get("/", lambda _r: web.Response(text=page, content_type="text/html"))
    app.router.add_route("*", "/{tail:.*}", forward)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print("listening", sock.getsockname()[1], flush=True)
    web.run_app(app, sock=sock, print=None)


if __name__ == "__main__":
    main()
