"""The console's WebSocket protocol, defined once (server: robot_rl/console/server.py, page: static/console.js).

One WebSocket per page at `/ws` (with `?token=<token>` or the token cookie when the server has a token).
Text messages are JSON objects with a `type`; binary messages are camera frames.

Server -> page
  {"type": "hello", "client": str, "robots": [str], "max_silence_s": float, "on_silence": "policy"|"hold",
   "action_dim": {robot: 4|7}}
      once, after the socket opens.
  {"type": "state", "t": float, "client": str, "robots": {robot: RobotView}}
      every STATE_PERIOD_S. RobotView: {
        "lease": "you" | "other" | "free",  "mode": "policy" | "person" | "holding" | "eval" | "demo" | "idle",
        "armed": bool, "estop": bool, "estop_reason": str, "paused": str (why the loop waits, "" when running),
        "episode": int, "step": int, "reward": float, "return": float, "success": bool,
        "success_probability": float | null, "threshold": float | null,
        "tcp": [x, y, z] | null, "gripper": float | null, "gripper_max": float | null,
        "joints": [{"name", "pos", "low", "high", "proximity"}]  (proximity: 0 mid-range .. 1 at a limit),
        "cameras": [str], "applied_seq": int (the last teleop seq the robot executed)}
  {"type": "telemetry", "evals": [[env_step, success_rate, mean_return]], "episodes": [EpisodeRow],
   "interventions": [[env_step, takeovers, intervention_steps, length]], "updates": [[env_step, updates_per_s]],
   "env_step": int}
      when the run's curves changed (at most every TELEMETRY_PERIOD_S). EpisodeRow: {"episode", "source",
      "length", "return", "success", "interventions", "intervention_steps", "safety_steps" (steps the safety
      layer clipped or held), "label", "robot"}.
  {"type": "applied", "robot": str, "seq": int}
      to the lease holder, when the robot executed (or, in ROS mode, published) its teleop command `seq`.
  {"type": "notice", "level": "info"|"warn"|"error", "text": str}
      a refusal or a change the person should see ("another page holds control", "e-stop latched: clear it").
  binary camera frame: 1 byte n, n bytes robot name (utf-8), 1 byte m, m bytes camera name, 4 bytes
      frame seq (uint32 big endian), then JPEG bytes.

Page -> server (every command names the robot it is for; e-stop applies to every robot)
  {"type": "lease", "robot": str, "take": bool}       take or give back the control lease
  {"type": "teleop", "robot": str, "seq": int, "active": bool, "action": [float], "speed": float}
      from the lease holder, every TELEOP_PERIOD_S while the page is visible (also when not active: it is
      the page's heartbeat). `action` in [-1, 1]: x, y, z, (rx, ry, rz,) gripper; `speed` in (0, 1] scales
      the motion part. `seq` increases within a lease (each page counts its own: the hub starts afresh when
      the lease changes hands); an older or repeated seq is ignored.
  {"type": "label", "robot": str, "label": "success"|"failure"|"discard"}
  {"type": "reset", "robot": str}                     end the episode now (truncated) and reset
  {"type": "arm", "robot": str, "on": bool}
  {"type": "estop"}                                    any page, lease or not
  {"type": "clear_estop", "confirm": true}             the lease holder of any robot; the page asks first
  {"type": "ping", "t": float}  -> {"type": "pong", "t": float, "server_t": float}
"""

from __future__ import annotations

STATE_PERIOD_S = 0.05  # state pushed to every page at 20 Hz
TELEMETRY_PERIOD_S = 0.5
TELEOP_PERIOD_S = 0.02  # the page's teleop/heartbeat cadence while it holds the lease
MAX_SILENCE_S = 0.2  # a lease holder silent for longer loses control
CAMERA_FPS = 30.0  # most frames per second per camera sent to a page
JPEG_QUALITY = 80

LABELS = ("success", "failure", "discard")
MODES = ("policy", "person", "holding", "eval", "demo", "idle")
ON_SILENCE = ("policy", "hold")
PAGE_COMMANDS = ("lease", "teleop", "label", "reset", "arm", "estop", "clear_estop", "ping")


def frame_message(robot: str, camera: str, seq: int, jpeg: bytes) -> bytes:
    """A binary camera frame message (see the module docstring)."""
    r, c = robot.encode(), camera.encode()
    if len(r) > 255 or len(c) > 255:
        raise ValueError("robot and camera names must be at most 255 bytes")
    return bytes([len(r)]) + r + bytes([len(c)]) + c + (seq & 0xFFFFFFFF).to_bytes(4, "big") + jpeg


def parse_frame_message(data: bytes) -> tuple[str, str, int, bytes]:
    """(robot, camera, seq, jpeg) of a binary frame message."""
    n = data[0]
    robot = data[1 : 1 + n].decode()
    m = data[1 + n]
    camera = data[2 + n : 2 + n + m].decode()
    at = 2 + n + m
    return robot, camera, int.from_bytes(data[at : at + 4], "big"), bytes(data[at + 4 :])
