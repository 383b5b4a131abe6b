"""ConsoleEnv: the outermost wrapper of an env the console watches and guards.

Each step it
  - waits, without commanding the robot, while the hub says the loop must not run (e-stop latched,
    disarmed, or holding after the person went silent): the robot is told to `stop()` once, the page
    shows why, and the step runs when the person arms (or takes over) again. An episode that waited ends
    at that step (truncated): the world may have changed meanwhile;
  - keeps real time when `realtime` (a person cannot drive a simulator that runs ahead of the clock),
    starting a step early when the person's command changes (a key press acts at once, not at the next
    10 Hz tick; the step after it waits a whole period, so the rate stays real time);
  - then steps the wrapped env (whose InterventionWrapper, when there is one, reads the person's command
    now, after any wait, never before it);
  - reports the robot's state, the step and the camera frames to the hub: the observation's images, or,
    for a state task on a robot that renders, its cameras at most `fps` times a second.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.console.hub import RobotHub
from robot_rl.data.schema import StepInfo
from robot_rl.envs.realtime import Pacer, control_period

POLL_S = 0.01


def joint_view(robot, q: np.ndarray) -> list[dict]:
    """Joints with their limit proximity (0 mid-range, 1 at a limit) where the robot has kinematics."""
    kin = getattr(robot, "kin", None)
    if kin is None:
        return [
            {"name": f"j{i}", "pos": float(v), "low": None, "high": None, "proximity": None} for i, v in enumerate(q)
        ]
    low, high = kin.joint_range
    half = np.maximum((high - low) / 2.0, 1e-9)
    proximity = np.clip(np.abs(q - (low + high) / 2.0) / half, 0.0, 1.0)
    return [
        {"name": n, "pos": float(v), "low": float(lo), "high": float(hi), "proximity": float(p)}
        for n, v, lo, hi, p in zip(kin.joint_names, q, low, high, proximity)
    ]


def classifier_threshold(env: gym.Env) -> float | None:
    """The reward classifier's success threshold, from the first wrapper in the chain that has a classifier."""
    while env is not None:
        classifier = getattr(env, "classifier", None)
        if classifier is not None:
            return float(classifier.threshold)
        env = getattr(env, "env", None)
    return None


class ConsoleEnv(gym.Wrapper):
    """See the module docstring. `mode`: what the page shows when nobody drives ("policy" or "eval")."""

    def __init__(
        self,
        env: gym.Env,
        hub: RobotHub,
        mode: str = "policy",
        realtime: bool = False,
        fps: float = 15.0,
        render_size: tuple[int, int] = (128, 128),
        camera_feed: bool = False,
        page_drives: bool = False,
    ) -> None:
        """`camera_feed`: the robot's real cameras reach the hub by a CameraFeed (frames are not sent from here);
        `page_drives`: the page is this env's teleop device (its key presses start a paced step early)."""
        super().__init__(env)
        self.hub, self.mode, self.realtime = hub, mode, bool(realtime)
        self.render_period = 1.0 / float(fps) if fps > 0 else None  # None: never render for the page
        self.render_size = tuple(int(s) for s in render_size)
        self.robot = getattr(env.unwrapped, "robot", None)
        self.camera_feed = bool(camera_feed)
        self.episode = -1
        self.step_index = 0
        self.episode_return = 0.0
        self.pacer = Pacer(control_period(env), sleep=hub.wait_for_input if page_drives else time.sleep)
        self._last_render = -float("inf")
        self.waits = 0  # times the loop waited for the person (e-stop, disarmed, holding)
        self.hub.publish(mode=mode, threshold=classifier_threshold(env))

    # ------------------------------------------------------------------ the gate
    def _wait_until_allowed(self) -> bool:
        """Block while the hub pauses the loop; True when it waited."""
        why = self.hub.paused()
        if not why:
            return False
        self.waits += 1
        if self.robot is not None:
            self.robot.stop()
        while why:
            self.hub.publish(paused=why)
            time.sleep(POLL_S)
            why = self.hub.paused()
        self.hub.publish(paused="")
        self.pacer.restart()
        return True

    # ------------------------------------------------------------------ gym
    def reset(self, **kwargs: Any):
        self._wait_until_allowed()
        observation, info = self.env.reset(**kwargs)
        self.episode += 1
        self.step_index, self.episode_return = 0, 0.0
        self.pacer.restart()
        self.hub.publish(episode=self.episode, step=0, reward=0.0, episode_return=0.0, success=False)
        self._report(observation, None)
        return observation, info

    def step(self, action: np.ndarray):
        if self.realtime:
            self.pacer.wait()
        waited = self._wait_until_allowed()  # after the pacing sleep: right before the robot is commanded
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.step_index += 1
        self.episode_return += float(reward)
        if waited:
            truncated = truncated or not terminated
        self._report(observation, StepInfo.of(info), float(reward))
        return observation, reward, terminated, truncated, info

    def _report(self, observation: dict, step: StepInfo | None, reward: float = 0.0) -> None:
        view: dict[str, Any] = {"mode": self.mode, "step": self.step_index, "reward": reward}
        view["episode_return"] = self.episode_return
        if step is not None:
            view["success"] = bool(step.success)
            view["success_probability"] = step.success_probability
        if self.robot is not None:
            state = self.robot.read_state()
            view["tcp"] = [float(x) for x in state.tcp_pos]
            view["gripper"] = float(state.gripper_opening)
            view["gripper_max"] = float(getattr(self.robot, "gripper_max_opening", np.nan))
            view["joints"] = joint_view(self.robot, np.asarray(state.joint_pos, np.float64))
        self.hub.publish(**view)
        if self.camera_feed:
            return
        images = {k[len("image/") :]: v for k, v in observation.items() if k.startswith("image/")}
        if images:
            for camera, rgb in images.items():
                self.hub.publish_frame(camera, rgb)
            return
        now = time.monotonic()
        names = getattr(self.robot, "camera_names", ())
        due = self.render_period is not None and now - self._last_render >= self.render_period and self.hub.watched
        if names and due and hasattr(self.robot, "render"):
            self._last_render = now
            for camera in names:
                self.hub.publish_frame(camera, self.robot.render(camera, *self.render_size))
