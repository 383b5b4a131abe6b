"""Real time for a simulator a person drives: one control step per `control_dt` of wall time.

A simulator steps as fast as the host can (a 10 Hz control step takes a millisecond or two); a person
cannot drive a robot that runs ahead of the clock. `Pacer` holds a loop to its period; `RealTime` is the
env wrapper record-demos puts around a simulated robot a person drives without the console (the console's
gate, robot_rl/console/env.py, paces with the same Pacer).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np


def control_period(env: gym.Env, default: float = 0.1) -> float:
    """The control period (s) of the robot under `env`; `default` for an env without one."""
    robot = getattr(env.unwrapped, "robot", None)
    return float(getattr(robot, "control_dt", default))


class Pacer:
    """`wait()` once per step returns at most once per `dt` seconds of wall time, on average.

    Ticks are scheduled on a fixed grid, so a short sleep overshoot does not accumulate; a step that ran
    late (the loop fell behind, or waited for a person) restarts the grid at now instead of rushing the
    following steps to catch up. `restart()` (at a reset, after a pause) lets the next step run at once.
    A `sleep` that returns early (the console's: when the person's command changed) runs that step early
    and the one after it a whole period after its own tick: no more steps than the wall clock allows.
    """

    def __init__(
        self, dt: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        if not dt > 0:
            raise ValueError(f"control period {dt} must be > 0 seconds")
        self.dt, self.clock, self.sleep = float(dt), clock, sleep
        self._next = 0.0

    def restart(self) -> None:
        self._next = 0.0

    def wait(self) -> None:
        now = self.clock()
        if self._next > now:
            self.sleep(self._next - now)
            now = min(self.clock(), self._next)
        self._next = max(self._next, now) + self.dt


class RealTime(gym.Wrapper):
    """`env` stepped no faster than its robot's control period (`dt` overrides it)."""

    def __init__(self, env: gym.Env, dt: float | None = None) -> None:
        super().__init__(env)
        self.pacer = Pacer(control_period(env) if dt is None else dt)

    def reset(self, **kwargs: Any):
        observation, info = self.env.reset(**kwargs)
        self.pacer.restart()
        return observation, info

    def step(self, action: np.ndarray):
        self.pacer.wait()
        return self.env.step(action)
