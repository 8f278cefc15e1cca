"""Safe-by-default request checks, as one ASGI middleware (:class:`Guard`).

- **Host** must name the address the server is bound to (``127.0.0.1``, ``localhost`` or
  ``[::1]`` with the port, for a loopback bind), so a page of another site that points its own
  DNS name at 127.0.0.1 (DNS rebinding) gets 403. A wildcard bind (``0.0.0.0``) accepts any Host
  unless names are given with ``allowed_hosts``.
- **Origin**, when a browser sends one, must be this server (``http://`` + an allowed Host);
  ``Sec-Fetch-Site: cross-site`` is refused too. Another site's page can then neither drive the
  API nor read its answers.
- **Body size**: a request body larger than ``max_body`` bytes gets 413, from its
  ``Content-Length`` before anything is read, or while it streams when that header is absent;
  the whole body is buffered (at most ``max_body``) before the app sees it.
- Every response gets ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``, a
  same-origin ``Content-Security-Policy`` and ``Cache-Control: no-store``.

Refusals are JSON ``{"error": "<one line>"}`` like every other error of the API.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::", "")
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def allowed_host_values(host: str, port: int, extra: Iterable[str] = ()) -> set[str] | None:
    """The Host header values accepted for a server bound to ``host:port`` (None: any)."""
    names = list(extra)
    if host in LOOPBACK:
        names += list(LOOPBACK)
    elif host not in WILDCARD:
        names.append(host)
    elif not names:
        return None
    out: set[str] = set()
    for n in names:
        n = n.lower()
        h = f"[{n}]" if ":" in n and not n.startswith("[") else n
        out.add(f"{h}:{port}")
        if port == 80:
            out.add(h)
    return out


async def send_json(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CSP.encode()),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
]


class Guard:
    """The middleware (module docstring).

    Args:
        app: the ASGI app to protect.
        hosts: accepted Host header values (:func:`allowed_host_values`); None accepts any.
        max_body: largest request body in bytes.
    """

    def __init__(self, app: ASGIApp, hosts: set[str] | None, max_body: int) -> None:
        self.app = app
        self.hosts = hosts
        self.max_body = int(max_body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":  # none served; refuse rather than pass on
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "").strip().lower()
        if self.hosts is not None and host not in self.hosts:
            await send_json(
                send, 403, f"Host {host!r}: not this server (expected one of "
                f"{', '.join(sorted(self.hosts))}); start it with --host/--allow-host to serve "
                "another name",
            )  # fmt: skip
            return
        origin = headers.get("origin")
        if origin is not None:
            allowed = {f"http://{h}" for h in (self.hosts or {host})}
            if origin.lower().rstrip("/") not in allowed:
                await send_json(
                    send, 403, f"Origin {origin!r}: requests from another site are refused"
                )
                return
        if headers.get("sec-fetch-site") == "cross-site":
            await send_json(
                send, 403, "Sec-Fetch-Site cross-site: requests from another site are refused"
            )
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, _with_headers(send))
            return
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await send_json(send, 400, f"Content-Length {length!r}: not a number")
                return
            if int(length) > self.max_body:
                await send_json(send, 413, self._too_large(int(length)))
                return
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await send_json(send, 413, self._too_large(None))
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, _with_headers(send))

    def _too_large(self, size: int | None) -> str:
        mb = self.max_body / 2**20
        got = f" ({size / 2**20:.3g} MB)" if size is not None else ""
        return f"upload{got}: larger than the {mb:.3g} MB limit (--max-upload-mb)"


def _with_headers(send: Send) -> Send:
    async def wrapped(msg: Message) -> None:
        if msg["type"] == "http.response.start":
            have = {k.lower() for k, _ in msg.get("headers", [])}
            msg = dict(msg)
            msg["headers"] = list(msg.get("headers", [])) + [
                h for h in SECURITY_HEADERS if h[0] not in have
            ]
        await send(msg)

    return wrapped
