"""ConsoleSession: the console a command runs beside its control loop (`console=true`, `teleop=console`).

`open_console(cfg)` reads the `console` group (configs/console/default.yaml) and starts the web server;
the command then wraps its envs with `session.gate(env)`, takes the page as its teleop device with
`session.device_for(env)` and adds `session.sink` to its run's sinks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
from omegaconf import DictConfig

from robot_rl.config import log, typed
from robot_rl.console.device import ConsoleDevice
from robot_rl.console.env import ConsoleEnv
from robot_rl.console.feed import CameraFeed
from robot_rl.console.hub import Console, RobotHub
from robot_rl.console.server import ConsoleServer
from robot_rl.data.schema import ResetEvent, RunEvent, StepEvent
from robot_rl.robots import SIM_ROBOTS

#: teleop devices a person holds: the simulator then keeps real time (console.realtime=auto)
HUMAN_DEVICES = ("console", "keyboard", "gamepad", "spacemouse", "ros")
AUTO = "auto"


@dataclass
class ConsoleConfig:
    """The `console` group, typed (configs/console/default.yaml)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    on_silence: str = "policy"
    max_silence_s: float = 0.2
    realtime: str = AUTO
    armed: str = AUTO
    fps: float = 15.0
    render_size: list[int] = field(default_factory=lambda: [128, 128])


def _flag(value: str, auto: bool, key: str) -> bool:
    v = str(value).lower()
    if v == AUTO:
        return auto
    if v in ("true", "false"):
        return v == "true"
    raise ValueError(f"console.{key}={value!r}: use auto, true or false")


class ConsoleSink:
    """Run events to the console: curves and the episode table, and the episode in progress for `hub`."""

    def __init__(self, console: Console, hub: RobotHub) -> None:
        self.console, self.hub = console, hub

    def emit(self, event: RunEvent) -> None:
        if isinstance(event, (ResetEvent, StepEvent)):
            self.hub.publish(episode=event.episode)
            return
        self.console.telemetry.emit(event, self.hub.name)

    def close(self) -> None:
        pass


class ConsoleSession:
    """One robot's hub, the console and its running server (see the module docstring)."""

    def __init__(self, cfg: DictConfig, robot_name: str = "robot", log: Callable[[str], None] = log) -> None:
        c = typed(cfg.console, ConsoleConfig, "console")
        teleop = cfg.get("teleop") or {}
        human = teleop.get("device") in HUMAN_DEVICES
        self.page_drives = teleop.get("device") == "console"
        robot = cfg.get("robot") or {}
        sim = robot.get("name", "mujoco") in SIM_ROBOTS or cfg.task.get("name") == "gym"
        self.realtime = _flag(c.realtime, human and sim, "realtime")
        armed = _flag(c.armed, sim, "armed")
        if len(c.render_size) != 2 or min(c.render_size) < 1:
            raise ValueError(f"console.render_size={list(c.render_size)}: use [height, width] > 0")
        self.fps, self.render_size = float(c.fps), (int(c.render_size[0]), int(c.render_size[1]))
        self.console = Console()
        self.hub = self.console.add_robot(
            RobotHub(robot_name, max_silence_s=c.max_silence_s, on_silence=c.on_silence, armed=armed)
        )
        self.sink = ConsoleSink(self.console, self.hub)
        self.feed: CameraFeed | None = None
        self.server = ConsoleServer(self.console, c.host, c.port, c.token, log=log).start()
        if not armed:
            log(f"[console] the robot starts disarmed: arm it from the console ({self.server.url})")

    def gate(self, env: gym.Env, mode: str = "policy", person: bool = True) -> ConsoleEnv:
        """`env` guarded by the console (e-stop, arm, hold) and reported to it; in real time when a person
        may drive it (`person`) and `console.realtime` says so."""
        cameras = getattr(env.unwrapped, "robot", None) and getattr(env.unwrapped.robot, "cameras", None)
        if cameras and self.feed is None:  # real cameras reach the page at their own rate
            self.feed = CameraFeed(self.hub, cameras).start()
        drives = person and self.page_drives
        return ConsoleEnv(
            env, self.hub, mode, self.realtime and person, self.fps, self.render_size, bool(cameras), drives
        )

    def device_for(self, env: gym.Env) -> ConsoleDevice:
        """The page as the teleop device of `env` (its action size: 4, or 7 with rotation)."""
        shape = getattr(env.action_space, "shape", None) or (0,)
        if shape[0] not in (4, 7):
            raise ValueError(f"teleop=console drives 4- or 7-dim end-effector actions; this env's are {shape}")
        self.hub.action_dim = int(shape[0])
        return ConsoleDevice(self.hub)

    def close(self) -> None:
        if self.feed is not None:
            self.feed.close()
        self.server.close()

    def __enter__(self) -> ConsoleSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_console(cfg: DictConfig, log: Callable[[str], None] = log) -> ConsoleSession | None:
    """The console when `console.enabled` or `teleop=console`; None otherwise."""
    enabled = bool((cfg.get("console") or {}).get("enabled", False))
    if not enabled and (cfg.get("teleop") or {}).get("device") != "console":
        return None
    return ConsoleSession(cfg, log=log)
