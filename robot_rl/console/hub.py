"""The console's state, shared by the control loop and the web server: thread-safe, transport-free.

`Console` holds one `RobotHub` per robot and the run's `Telemetry`. The control loop (or the ROS console
node) writes robot state and camera frames into a hub and reads the person's command from it; the web
server (robot_rl/console/server.py) reads snapshots and frames and passes the pages' commands in.

Safety rules, all enforced here so that every transport gets them:
  - one page holds a robot's control lease at a time; the others view. Anyone can take a free lease, or
    one whose holder went silent. Driving, labels, reset, arm and clearing the e-stop need the lease;
  - any connected page can engage the e-stop (every robot at once). It latches: it disarms, and arming is
    refused until a lease holder clears it (the page asks for confirmation first); clearing leaves the
    robot disarmed;
  - a lease holder silent for more than `max_silence_s` (tab closed, network gone, tab hidden: browsers
    throttle hidden pages' timers to 1 Hz) loses the lease. If the person was driving, the robot returns to
    the policy (`on_silence=policy`) or holds until a page takes over again (`on_silence=hold`);
  - a teleop command acts only while it is fresher than `max_silence_s` by this machine's clock, and only
    once its `seq` is newer than the last one taken: a command is never replayed after a gap.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_rl.console.protocol import LABELS, MAX_SILENCE_S, ON_SILENCE
from robot_rl.data.schema import (
    EpisodeEnd,
    EpisodeLabel,
    EpisodeSource,
    EvalEvent,
    LabelEvent,
    LearnerStats,
    RunEvent,
)
from robot_rl.teleop.device import DeviceCommand

LABEL_BY_NAME = {"success": EpisodeLabel.SUCCESS, "failure": EpisodeLabel.FAILURE, "discard": EpisodeLabel.DISCARD}


class Refused(ValueError):
    """A page's command the console refuses; the message is shown on the page."""


@dataclass
class Hooks:
    """What a command does beyond the hub's own flags (the ROS console node calls the bridge's services).
    Each returns None, or raises Refused with the reason."""

    arm: Callable[[bool], None] | None = None
    estop: Callable[[bool, str], None] | None = None
    reset: Callable[[], None] | None = None


@dataclass
class Frame:
    seq: int
    stamp: float  # time.monotonic() when published
    rgb: np.ndarray  # uint8[H, W, 3]; never written after publishing


@dataclass
class _Teleop:
    arrival: float
    seq: int
    active: bool
    action: np.ndarray


@dataclass
class RobotView:
    """What the control loop reports each step (see protocol.py's RobotView)."""

    mode: str = "idle"
    episode: int = 0
    step: int = 0
    reward: float = 0.0
    episode_return: float = 0.0
    success: bool = False
    success_probability: float | None = None
    threshold: float | None = None
    tcp: list[float] | None = None
    gripper: float | None = None
    gripper_max: float | None = None
    joints: list[dict] = field(default_factory=list)
    paused: str = ""


class RobotHub:
    """One robot's lease, teleop command, labels, flags, state and camera frames."""

    def __init__(
        self,
        name: str,
        action_dim: int = 4,
        max_silence_s: float = MAX_SILENCE_S,
        on_silence: str = "policy",
        armed: bool = True,
        hooks: Hooks | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if on_silence not in ON_SILENCE:
            raise ValueError(f"console.on_silence={on_silence!r}: choose one of {', '.join(ON_SILENCE)}")
        if not max_silence_s > 0:
            raise ValueError(f"console.max_silence_s={max_silence_s}: must be > 0 seconds")
        if action_dim not in (4, 7):
            raise ValueError(f"the console drives 4-dim (xyz, gripper) or 7-dim actions, not {action_dim}")
        self.name, self.action_dim = name, int(action_dim)
        self.max_silence_s, self.on_silence = float(max_silence_s), on_silence
        self.hooks = hooks or Hooks()
        self.clock = clock
        self._lock = threading.RLock()
        self.holder: str | None = None
        self._holder_seen = 0.0
        self._teleop: _Teleop | None = None
        self._last_seq = -1
        self.applied_seq = -1  # the newest teleop seq the robot executed
        self.driving = False  # the person's command was active at the last read
        self.holding = False  # on_silence=hold after the driver went silent: the loop waits
        self.armed = bool(armed)
        self.estopped = False
        self.estop_reason = ""
        self._input = threading.Event()  # set when the person's command changed since the loop read it
        self._labels: deque[EpisodeLabel] = deque()
        self._end_episode = False
        self.view = RobotView()
        self.frames: dict[str, Frame] = {}
        self._frame_seq = 0
        self.notices: deque[tuple[str, str]] = deque(maxlen=50)  # (level, text) for every page
        self.notice_count = 0  # notices ever added (a page's cursor into `notices`)
        self.console: Console | None = None  # set by Console.add_robot
        self.counters = {"lease_lost_silent": 0, "teleop_refused": 0, "stale_dropped": 0, "estops": 0}

    @property
    def watched(self) -> bool:
        """A page is connected (a hub outside a Console counts as watched)."""
        return self.console is None or self.console.pages > 0

    def _notice(self, level: str, text: str) -> None:
        self.notices.append((level, text))
        self.notice_count += 1

    def notice(self, level: str, text: str) -> None:
        """A notice for every page (the transport's: a refused service call, a lost learner)."""
        with self._lock:
            self._notice(level, text)

    # ------------------------------------------------------------------ lease
    def _expire(self, now: float) -> None:
        """Revoke a silent holder's lease (under the lock)."""
        if self.holder is not None and now - self._holder_seen > self.max_silence_s:
            self.counters["lease_lost_silent"] += 1
            self._notice("warn", f"{self.name}: the page in control went silent; control lost")
            self._drop_holder()

    def _drop_holder(self) -> None:
        self.holder, self._teleop, self._last_seq = None, None, -1  # a page's seq counts from its lease
        if self.driving and self.on_silence == "hold":
            self.holding = True
        self.driving = False

    def take_lease(self, client: str) -> None:
        with self._lock:
            now = self.clock()
            self._expire(now)
            if self.holder not in (None, client):
                raise Refused(f"{self.name}: another page holds control; it can give it back, or wait until it goes")
            if self.holder != client:
                self._last_seq = -1  # seqs are the holder's own: a new holder's count starts afresh
            self.holder, self._holder_seen = client, now

    def release_lease(self, client: str) -> None:
        with self._lock:
            if self.holder == client:
                self._drop_holder()
                self.holding = False  # a deliberate hand-back returns to the policy

    def disconnect(self, client: str) -> None:
        """A page's socket closed: its lease ends as if it went silent (the hold rule applies)."""
        with self._lock:
            if self.holder == client:
                self._drop_holder()

    def lease_of(self, client: str) -> str:
        with self._lock:
            self._expire(self.clock())
            return "free" if self.holder is None else ("you" if self.holder == client else "other")

    def _require(self, client: str) -> None:
        self._expire(self.clock())
        if self.holder != client:
            raise Refused(f"{self.name}: take control first (another page holds it, or nobody does)")

    # ------------------------------------------------------------------ the page's commands
    def teleop(self, client: str, seq: int, active: bool, action, speed: float = 1.0) -> None:
        """A lease holder's command (also its heartbeat). Refused from a viewer; an old seq is dropped."""
        with self._lock:
            try:
                self._require(client)
            except Refused:
                self.counters["teleop_refused"] += 1
                raise
            now = self.clock()
            self._holder_seen = now
            if seq <= self._last_seq:
                self.counters["stale_dropped"] += 1
                return
            self._last_seq = int(seq)
            a = np.nan_to_num(np.asarray(action, np.float64).ravel()[: self.action_dim], nan=0.0)
            vec = np.zeros(self.action_dim, np.float32)
            vec[: len(a)] = np.clip(a, -1.0, 1.0)
            speed = float(np.clip(np.nan_to_num(speed, nan=0.0), 0.0, 1.0))
            vec[:-1] *= speed  # the gripper is not scaled
            old = self._teleop
            self._teleop = _Teleop(now, int(seq), bool(active), vec)
            self.holding = False  # a page in control again: the hold ends
            if old is None or old.active != bool(active) or (active and not np.array_equal(old.action, vec)):
                self._input.set()

    def label(self, client: str, name: str) -> None:
        if name not in LABELS:
            raise Refused(f"unknown label {name!r}: one of {', '.join(LABELS)}")
        with self._lock:
            self._require(client)
            self._labels.append(LABEL_BY_NAME[name])

    def request_reset(self, client: str) -> None:
        with self._lock:
            self._require(client)
            self._end_episode = True
        if self.hooks.reset:
            self.hooks.reset()

    def arm(self, client: str, on: bool) -> None:
        with self._lock:
            self._require(client)
            if on and self.estopped:
                raise Refused(f"{self.name}: e-stop latched ({self.estop_reason}); clear it first")
        if self.hooks.arm:
            self.hooks.arm(bool(on))
        with self._lock:
            self.armed = bool(on)

    def estop(self, reason: str) -> None:
        """Anyone: latch the e-stop and disarm."""
        with self._lock:
            self.estopped, self.armed, self.estop_reason = True, False, reason
            self.counters["estops"] += 1
            self._notice("error", f"{self.name}: E-STOP ({reason})")
        if self.hooks.estop:
            self.hooks.estop(True, reason)

    def clear_estop(self) -> None:
        """Clear the latched e-stop (the caller checked the lease: `Console.clear_estop`)."""
        if self.hooks.estop:
            self.hooks.estop(False, "")
        with self._lock:
            self.estopped, self.estop_reason = False, ""
            self._notice("info", f"{self.name}: e-stop cleared; the robot stays disarmed until armed")

    def set_flags(self, armed: bool, estopped: bool, reason: str = "") -> None:
        """The robot's own view of its flags (the ROS bridge's status)."""
        with self._lock:
            self.armed, self.estopped = bool(armed), bool(estopped)
            if estopped and not self.estop_reason:
                self.estop_reason = reason or "engaged at the robot"
            if not estopped:
                self.estop_reason = ""

    # ------------------------------------------------------------------ the control loop's side
    def wait_for_input(self, timeout: float) -> None:
        """Sleep up to `timeout` s; return early when the person's command changed since the last read."""
        self._input.wait(timeout)

    def read_command(self) -> DeviceCommand:
        """The person's command now (see the module docstring); labels and reset are edges."""
        with self._lock:
            self._input.clear()
            now = self.clock()
            self._expire(now)
            label = self._labels.popleft() if self._labels else EpisodeLabel.NONE
            end, self._end_episode = self._end_episode, False
            t = self._teleop
            fresh = t is not None and now - t.arrival <= self.max_silence_s
            if not fresh and t is not None:
                self.counters["stale_dropped"] += int(t.active)
                self._teleop = None
            if fresh and t.active:
                self.driving = True
                self.applied_seq = t.seq
                return DeviceCommand(t.action.copy(), active=True, label=label, end_episode=end)
            if self.driving and not fresh and self.on_silence == "hold":
                self.holding = True
            self.driving = False
            return DeviceCommand(np.zeros(self.action_dim, np.float32), label=label, end_episode=end)

    def paused(self) -> str:
        """Why the control loop must not command the robot now ("" when it may)."""
        with self._lock:
            self._expire(self.clock())
            if self.estopped:
                return f"e-stop: {self.estop_reason}"
            if not self.armed:
                return "disarmed"
            if self.holding:
                return "holding: the person went silent; take control to resume"
            return ""

    def publish(self, **view: Any) -> None:
        """Update the robot's view (RobotView fields)."""
        with self._lock:
            for key, value in view.items():
                setattr(self.view, key, value)

    def publish_frame(self, camera: str, rgb: np.ndarray) -> None:
        """A new camera frame (kept by reference: the caller must not write into it afterwards)."""
        with self._lock:
            self._frame_seq += 1
            self.frames[camera] = Frame(self._frame_seq, self.clock(), rgb)

    def latest_frames(self) -> dict[str, Frame]:
        with self._lock:
            return dict(self.frames)

    def snapshot(self, client: str) -> dict:
        """The RobotView for `client` (protocol.py)."""
        with self._lock:
            self._expire(self.clock())
            v = self.view
            mode = "holding" if self.holding else ("person" if self.driving else v.mode)
            return {
                "lease": "free" if self.holder is None else ("you" if self.holder == client else "other"),
                "mode": mode,
                "armed": self.armed,
                "estop": self.estopped,
                "estop_reason": self.estop_reason,
                "paused": v.paused,
                "episode": v.episode,
                "step": v.step,
                "reward": _finite(v.reward),
                "return": _finite(v.episode_return),
                "success": v.success,
                "success_probability": _finite(v.success_probability),
                "threshold": _finite(v.threshold),
                "tcp": v.tcp,
                "gripper": _finite(v.gripper),
                "gripper_max": _finite(v.gripper_max),
                "joints": v.joints,
                "cameras": sorted(self.frames),
                "applied_seq": self.applied_seq,
            }


def _finite(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


class Telemetry:
    """The run's curves and recent episodes, fed by run events (`ConsoleSink`) or the ROS learner's events."""

    def __init__(self, max_points: int = 2000, max_rows: int = 30) -> None:
        self._lock = threading.Lock()
        self.version = 0
        self.env_step = 0
        self.evals: deque[list] = deque(maxlen=max_points)
        self.interventions: deque[list] = deque(maxlen=max_points)
        self.updates: deque[list] = deque(maxlen=max_points)
        self.episodes: deque[dict] = deque(maxlen=max_rows)
        # a label's event comes before its episode's EpisodeEnd (it is emitted on the episode's last step)
        self._labels: dict[int, str] = {}

    def emit(self, event: RunEvent, robot: str = "") -> None:
        with self._lock:
            self.env_step = max(self.env_step, int(event.env_step))
            if isinstance(event, EvalEvent):
                self.evals.append([event.env_step, event.success_rate, event.mean_return])
            elif isinstance(event, LearnerStats):
                self.updates.append([event.env_step, event.updates_per_s])
            elif isinstance(event, EpisodeEnd):
                if event.source == EpisodeSource.ONLINE:
                    self.interventions.append(
                        [event.env_step, event.interventions, event.intervention_steps, event.length]
                    )
                if event.source == EpisodeSource.EVAL:
                    return  # eval episodes show up as the eval curve
                self.episodes.append(
                    {
                        "episode": event.episode,
                        "source": EpisodeSource(event.source).name.lower(),
                        "length": event.length,
                        "return": round(event.episode_return, 3),
                        "success": event.success,
                        "interventions": event.interventions,
                        "intervention_steps": event.intervention_steps,
                        "safety_steps": event.safety_steps,
                        "label": self._labels.pop(event.episode, "discard" if event.discarded else ""),
                        "robot": robot or event.actor,
                    }
                )
            elif isinstance(event, LabelEvent):
                name = EpisodeLabel(event.label).name.lower()
                rows = [row for row in self.episodes if row["episode"] == event.episode]
                for row in rows:
                    row["label"] = name
                if not rows:  # its EpisodeEnd is still to come
                    self._labels[event.episode] = name
                    while len(self._labels) > 100:
                        del self._labels[next(iter(self._labels))]
            else:
                return
            self.version += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "type": "telemetry",
                "env_step": self.env_step,
                "evals": list(self.evals),
                "interventions": list(self.interventions),
                "updates": list(self.updates),
                "episodes": list(self.episodes),
            }

    def close(self) -> None:
        pass


class Console:
    """Every robot's hub and the run's telemetry; what the web server serves."""

    def __init__(self, robots: dict[str, RobotHub] | None = None) -> None:
        self.robots: dict[str, RobotHub] = dict(robots or {})
        self.telemetry = Telemetry()
        self.pages = 0  # pages connected now: nothing is rendered for nobody

    def add_robot(self, hub: RobotHub) -> RobotHub:
        self.robots[hub.name] = hub
        hub.console = self
        return hub

    def robot(self, name: str) -> RobotHub:
        try:
            return self.robots[name]
        except KeyError:
            raise Refused(f"no robot {name!r} on this console: {', '.join(self.robots) or 'none yet'}") from None

    def estop_all(self, reason: str) -> None:
        for hub in list(self.robots.values()):
            hub.estop(reason)

    def clear_estop(self, client: str) -> None:
        """The lease holder of any robot clears every robot's e-stop."""
        held = [hub for hub in self.robots.values() if hub.lease_of(client) == "you"]
        if not held:
            raise Refused("take control of a robot first: only the page in control can clear the e-stop")
        for hub in list(self.robots.values()):
            hub.clear_estop()

    def disconnect(self, client: str) -> None:
        for hub in self.robots.values():
            hub.disconnect(client)


def new_client_id() -> str:
    return secrets.token_hex(6)
