"""The console's server over real sockets: bind rules, token, Host and Origin checks, the lease over
WebSockets, silence and what is served."""

from __future__ import annotations

import http.client
import json
import time

import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from robot_rl.config import compose
from robot_rl.console.hub import Console, RobotHub
from robot_rl.console.protocol import parse_frame_message
from robot_rl.console.server import ConsoleServer
from tests.cli_proc import robot_rl


@pytest.fixture
def served():
    console = Console()
    hub = console.add_robot(RobotHub("arm"))
    server = ConsoleServer(console, port=0, log=lambda _: None).start()
    yield console, hub, server
    server.close()


def get(server: ConsoleServer, path: str, host: str | None = None, cookie: str | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    headers = {"Host": host or f"127.0.0.1:{server.port}"}
    if cookie:
        headers["Cookie"] = cookie
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    return response.status, response.getheader("Set-Cookie"), response.read()


def socket(server: ConsoleServer, query: str = "", origin: str | None = "same"):
    origin = f"http://127.0.0.1:{server.port}" if origin == "same" else origin
    return connect(f"ws://127.0.0.1:{server.port}/ws{query}", origin=origin, open_timeout=5)


def until(predicate, timeout: float = 3.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def messages(ws, kind: str, n: int = 1, timeout: float = 3.0) -> list[dict]:
    out, deadline = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        raw = ws.recv(timeout=max(deadline - time.monotonic(), 0.01))
        if isinstance(raw, str) and json.loads(raw)["type"] == kind:
            out.append(json.loads(raw))
    assert len(out) == n, f"expected {n} {kind} messages, got {len(out)}"
    return out


def test_default_bind_is_loopback_and_other_binds_need_a_token():
    cfg = compose("train", ["console=true"])
    assert cfg.console.enabled and cfg.console.host == "127.0.0.1" and cfg.console.token is None
    with pytest.raises(ValueError, match="reachable from other machines: set console.token=auto"):
        ConsoleServer(Console(), host="0.0.0.0", port=0)
    with pytest.raises(ValueError, match=">= 16"):
        ConsoleServer(Console(), host="0.0.0.0", port=0, token="short")
    server = ConsoleServer(Console(), host="0.0.0.0", port=0, token="auto", log=lambda _: None).start()
    try:
        assert server.token and len(server.token) >= 16 and f"token={server.token}" in server.url
    finally:
        server.close()


def test_the_cli_refuses_a_public_bind_without_a_token_in_one_line(tmp_path):
    result = robot_rl("train", f"run_dir={tmp_path / 'run'}", "console=true", "console.host=0.0.0.0", "steps=10")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "set console.token=auto" in lines[0]
    assert not (tmp_path / "run" / "episodes.zarr").exists()


def test_token_is_checked_on_every_request_and_socket():
    console = Console()
    console.add_robot(RobotHub("arm"))
    server = ConsoleServer(console, port=0, token="s3cret-token-0123456789", log=lambda _: None).start()
    try:
        assert get(server, "/")[0] == 403
        assert get(server, "/?token=wrong-token-0123456789")[0] == 403
        assert get(server, "/static/console.js")[0] == 403
        status, cookie, body = get(server, "/?token=s3cret-token-0123456789")
        assert status == 200 and b"<html" in body.lower()
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert get(server, "/static/console.js", cookie=cookie.split(";")[0])[0] == 200
        with pytest.raises(InvalidStatus) as err:
            socket(server, "?token=wrong-token-0123456789")
        assert err.value.response.status_code == 403
        with pytest.raises(InvalidStatus):
            socket(server)  # no token at all
        with socket(server, "?token=s3cret-token-0123456789") as ws:
            assert messages(ws, "hello")[0]["robots"] == ["arm"]
        assert server.stats["rejected_ws"] == 2 and server.stats["rejected_http"] == 3
    finally:
        server.close()


def test_origin_and_host_are_checked(served):
    _, _, server = served
    for origin in ("http://evil.example", None):
        with pytest.raises(InvalidStatus):
            socket(server, origin=origin)
    assert get(server, "/", host=f"rebind.example:{server.port}")[0] == 403  # DNS rebinding
    assert get(server, "/", host=f"localhost:{server.port}")[0] == 200


def test_only_the_package_files_are_served(served):
    _, _, server = served
    assert get(server, "/")[0] == 200
    for path in ("/static/../../pyproject.toml", "/static/hub.py", "/../README.md", "/static/%2e%2e/server.py"):
        assert get(server, path)[0] == 404, path


def test_a_viewer_cannot_drive_but_can_stop(served):
    _, hub, server = served
    with socket(server) as driver, socket(server) as viewer:
        messages(driver, "hello")
        messages(viewer, "hello")
        driver.send(json.dumps({"type": "lease", "robot": "arm", "take": True}))
        until(lambda: hub.holder is not None, what="the lease")
        viewer.send(json.dumps({"type": "lease", "robot": "arm", "take": True}))
        assert "another page holds control" in messages(viewer, "notice")[0]["text"]
        viewer.send(json.dumps({"type": "teleop", "robot": "arm", "seq": 1, "active": True, "action": [1, 0, 0, 0]}))
        assert "take control first" in messages(viewer, "notice")[0]["text"]
        assert not hub.read_command().active
        viewer.send(json.dumps({"type": "estop"}))
        until(lambda: hub.estopped, what="the viewer's e-stop")
        driver.send(json.dumps({"type": "arm", "robot": "arm", "on": True}))
        assert any("e-stop latched" in m["text"] for m in messages(driver, "notice", 2))
        assert not hub.armed
        views = [m["robots"]["arm"] for m in messages(viewer, "state", 2)]
        assert views[-1]["estop"] and views[-1]["lease"] == "other"


def test_silence_and_a_closed_socket_end_the_take_over(served):
    _, hub, server = served
    hub.publish_frame("front", np.full((16, 16, 3), 200, np.uint8))
    with socket(server) as ws:
        messages(ws, "hello")
        ws.send(json.dumps({"type": "lease", "robot": "arm", "take": True}))
        ws.send(json.dumps({"type": "teleop", "robot": "arm", "seq": 1, "active": True, "action": [1, 0, 0, 0]}))
        until(lambda: hub.read_command().active, what="the take-over")
        quiet = time.monotonic()
        until(lambda: not hub.read_command().active, timeout=1.0, what="the silent page to lose control")
        assert time.monotonic() - quiet <= 0.25 and hub.holder is None
        frames = []
        until(lambda: frames.append(ws.recv(timeout=1)) or isinstance(frames[-1], bytes), what="a camera frame")
        robot, camera, seq, jpeg = parse_frame_message(frames[-1])
        assert (robot, camera, seq) == ("arm", "front", 1) and jpeg[:2] == b"\xff\xd8"
        ws.send(json.dumps({"type": "lease", "robot": "arm", "take": True}))
        ws.send(json.dumps({"type": "teleop", "robot": "arm", "seq": 1, "active": True, "action": [0, 1, 0, 0]}))
        until(lambda: hub.read_command().active, what="the second take-over")
    closed = time.monotonic()
    until(lambda: not hub.read_command().active, timeout=1.0, what="the closed page to lose control")
    assert time.monotonic() - closed < 0.2


def test_bad_messages_get_a_notice_and_change_nothing(served):
    _, hub, server = served
    with socket(server) as ws:
        messages(ws, "hello")
        for bad in ("not json", json.dumps({"type": "fly"}), json.dumps({"type": "teleop", "robot": "nope"})):
            ws.send(bad)
            assert messages(ws, "notice")[0]["level"] == "error"
        ws.send(json.dumps({"type": "clear_estop"}))
        assert "confirm" in messages(ws, "notice")[0]["text"]
    assert hub.armed and not hub.estopped and hub.holder is None
