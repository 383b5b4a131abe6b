"""The console's web server: Starlette on uvicorn, in a background thread beside the control loop.

Serves the page (robot_rl/console/static: nothing from outside the package, no CDN) and one WebSocket per
page (the protocol: robot_rl/console/protocol.py). Security:
  - binds 127.0.0.1 by default. Any other address needs a token (`token=auto` generates one and the URL
    to open is printed); without one the server refuses to start;
  - with a token, every HTTP request and WebSocket carries it (`?token=` once: the page then keeps it in
    an HttpOnly, SameSite=Strict cookie); a wrong or missing one gets 403, a WebSocket is closed before it
    opens. Tokens are compared in constant time;
  - without a token (loopback only) the Host header must name the loopback, so a web page in the same
    browser cannot reach the console through DNS rebinding;
  - a WebSocket's Origin must be this server's own (no other site's page can open one).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import ipaddress
import json
import secrets
import threading
import time
from importlib import resources
from urllib.parse import parse_qs

from robot_rl.console.hub import Console, Refused, new_client_id
from robot_rl.console.protocol import (
    CAMERA_FPS,
    JPEG_QUALITY,
    STATE_PERIOD_S,
    TELEMETRY_PERIOD_S,
    frame_message,
)

COOKIE = "robot_rl_console"
STATIC = {  # the files served, by URL path: nothing else is
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/static/console.css": ("console.css", "text/css; charset=utf-8"),
}
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")
MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    if host in ("localhost", "::1"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(host: str, token: str | None) -> str | None:
    """The token the server checks: None (loopback only), a generated one (`auto`) or the given one."""
    if token in (None, "", "null", "none"):
        if not is_loopback(host):
            raise ValueError(
                f"console.host={host} is reachable from other machines: set console.token=auto (or a secret of "
                f">= {MIN_TOKEN_CHARS} characters), or keep the default 127.0.0.1 and use an SSH tunnel "
                "(ssh -L 8765:127.0.0.1:8765 <training machine>)"
            )
        return None
    if token == "auto":
        return secrets.token_urlsafe(24)
    token = str(token)
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"console.token is {len(token)} characters: use >= {MIN_TOKEN_CHARS}, or token=auto")
    return token


def encode_jpeg(rgb) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


class ConsoleServer:
    """`ConsoleServer(console, host, port, token).start()`; `url` is what to open; `close()` stops it."""

    def __init__(
        self, console: Console, host: str = "127.0.0.1", port: int = 8765, token: str | None = None, log=print
    ) -> None:
        self.console, self.host, self.port = console, str(host), int(port)
        if not 0 <= self.port <= 65535:
            raise ValueError(f"console.port={port}: must be 0..65535 (0 picks a free one)")
        self.token = resolve_token(self.host, token)
        self.log = log
        self._thread: threading.Thread | None = None
        self._server = None
        self._jpeg: dict[tuple[str, str], tuple[int, bytes]] = {}
        self._jpeg_lock = threading.Lock()
        self.stats = {"pages": 0, "frames_sent": 0, "rejected_http": 0, "rejected_ws": 0}
        self.app = self._app()

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 10.0) -> ConsoleServer:
        import uvicorn

        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", lifespan="off", ws="websockets-sansio"
        )
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # the main thread owns the signals
        self._thread = threading.Thread(target=self._server.run, name="console_server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ValueError(
                    f"the console could not listen on {self.host}:{self.port} (in use?): pick another console.port"
                )
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        self.log(f"[console] open {self.url}")
        return self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if host in ("0.0.0.0", "[::]"):
            host = "<this machine's address>"
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._server = self._thread = None

    def __enter__(self) -> ConsoleServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ checks
    def _token_ok(self, query: str, cookies: dict[str, str]) -> tuple[bool, bool]:
        """(allowed, came in the query)."""
        if self.token is None:
            return True, False
        given = parse_qs(query).get("token", [None])[0]
        if given is not None:
            return hmac.compare_digest(given.encode(), self.token.encode()), True
        cookie = cookies.get(COOKIE)
        return cookie is not None and hmac.compare_digest(cookie.encode(), self.token.encode()), False

    def _host_ok(self, host_header: str) -> bool:
        if self.token is not None:
            return True
        name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        return name in LOOPBACK_NAMES

    # ------------------------------------------------------------------ the app
    def _app(self):
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse, Response
        from starlette.routing import Route, WebSocketRoute

        files = resources.files("robot_rl.console") / "static"

        async def page(request: Request) -> Response:
            ok, in_query = self._token_ok(request.url.query, request.cookies)
            if not ok or not self._host_ok(request.headers.get("host", "")):
                self.stats["rejected_http"] += 1
                return PlainTextResponse("forbidden: open the URL the console printed (with its token)", 403)
            name, media = STATIC[request.url.path]
            response = Response((files / name).read_bytes(), media_type=media)
            response.headers["Cache-Control"] = "no-store"
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Content-Security-Policy"] = (
                "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; style-src 'self'; "
                "script-src 'self'; frame-ancestors 'none'"
            )
            if in_query and self.token is not None:
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
            return response

        routes = [Route(path, page) for path in STATIC]
        routes.append(WebSocketRoute("/ws", self._socket))
        return Starlette(routes=routes)

    async def _socket(self, ws) -> None:
        ok, _ = self._token_ok(ws.url.query, ws.cookies)
        host = ws.headers.get("host", "")
        origin = ws.headers.get("origin")
        if not ok or not self._host_ok(host) or origin not in (f"http://{host}", f"https://{host}"):
            self.stats["rejected_ws"] += 1
            await ws.close(code=1008)
            return
        await ws.accept()
        self.stats["pages"] += 1
        self.console.pages += 1
        client = new_client_id()
        console = self.console
        await ws.send_json(
            {
                "type": "hello",
                "client": client,
                "robots": list(console.robots),
                "max_silence_s": max((h.max_silence_s for h in console.robots.values()), default=0.2),
                "on_silence": next((h.on_silence for h in console.robots.values()), "policy"),
                "action_dim": {name: hub.action_dim for name, hub in console.robots.items()},
            }
        )
        sender = asyncio.create_task(self._send_loop(ws, client))
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await self._handle(ws, client, message.get("text"))
        except Exception:  # a page that breaks the protocol or the socket loses its lease like a silent one
            pass
        finally:
            console.disconnect(client)
            console.pages -= 1
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _handle(self, ws, client: str, text: str | None) -> None:
        console = self.console
        try:
            if text is None:
                raise Refused("send JSON text messages")
            msg = json.loads(text)
            kind = msg.get("type") if isinstance(msg, dict) else None
            if kind == "ping":
                await ws.send_json({"type": "pong", "t": msg.get("t"), "server_t": time.time()})
            elif kind == "estop":
                console.estop_all(f"pressed on a console page ({client})")
            elif kind == "clear_estop":
                if msg.get("confirm") is not True:
                    raise Refused("clearing the e-stop needs confirm=true")
                console.clear_estop(client)
            elif kind in ("lease", "teleop", "label", "reset", "arm"):
                hub = console.robot(str(msg.get("robot", "")))
                if kind == "lease":
                    (hub.take_lease if msg.get("take") else hub.release_lease)(client)
                elif kind == "teleop":
                    hub.teleop(
                        client, int(msg["seq"]), bool(msg.get("active")), msg.get("action", []), msg.get("speed", 1.0)
                    )
                elif kind == "label":
                    hub.label(client, str(msg.get("label")))
                elif kind == "reset":
                    hub.request_reset(client)
                else:
                    hub.arm(client, bool(msg.get("on")))
            else:
                raise Refused(f"unknown message type {kind!r}")
        except Refused as err:
            await ws.send_json({"type": "notice", "level": "error", "text": str(err)})
        except (ValueError, KeyError, TypeError) as err:
            await ws.send_json({"type": "notice", "level": "error", "text": f"bad message ({err})"})

    async def _jpeg_of(self, robot: str, camera: str, frame) -> bytes:
        key = (robot, camera)
        with self._jpeg_lock:
            cached = self._jpeg.get(key)
        if cached is not None and cached[0] == frame.seq:
            return cached[1]
        data = await asyncio.to_thread(encode_jpeg, frame.rgb)
        with self._jpeg_lock:
            self._jpeg[key] = (frame.seq, data)
        return data

    async def _send_loop(self, ws, client: str) -> None:
        console = self.console
        sent_frames: dict[tuple[str, str], tuple[int, float]] = {}
        applied: dict[str, int] = {}
        notices = {name: len(hub.notices) for name, hub in console.robots.items()}
        telemetry_version, telemetry_at = -1, 0.0
        frame_period = 1.0 / CAMERA_FPS
        next_state = 0.0
        while True:
            now = time.monotonic()
            if now >= next_state:
                next_state = now + STATE_PERIOD_S
                robots = {name: hub.snapshot(client) for name, hub in list(console.robots.items())}
                await ws.send_json({"type": "state", "t": time.time(), "client": client, "robots": robots})
                tel = console.telemetry
                if tel.version != telemetry_version and now - telemetry_at >= TELEMETRY_PERIOD_S:
                    telemetry_version, telemetry_at = tel.version, now
                    await ws.send_json(tel.snapshot())
                for name, hub in list(console.robots.items()):
                    seen = notices.get(name, 0)
                    items = list(hub.notices)
                    total = hub.notice_count
                    for level, text in items[max(0, len(items) - (total - seen)) :]:
                        await ws.send_json({"type": "notice", "level": level, "text": text})
                    notices[name] = total
            for name, hub in list(console.robots.items()):
                if hub.holder == client and hub.applied_seq != applied.get(name, -1):
                    applied[name] = hub.applied_seq
                    await ws.send_json({"type": "applied", "robot": name, "seq": hub.applied_seq})
                for camera, frame in hub.latest_frames().items():
                    last_seq, last_t = sent_frames.get((name, camera), (-1, 0.0))
                    if frame.seq != last_seq and now - last_t >= frame_period:
                        data = await self._jpeg_of(name, camera, frame)
                        await ws.send_bytes(frame_message(name, camera, frame.seq, data))
                        sent_frames[(name, camera)] = (frame.seq, now)
                        self.stats["frames_sent"] += 1
            await asyncio.sleep(0.005)
