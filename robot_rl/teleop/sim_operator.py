"""A simulated human operator for sim: the scripted expert plus a rule for when to step in.

It lets the whole human-in-the-loop pipeline (take-over, hand-back, intervention data, labels) run
and be tested headless. Rules:
  - "stall": step in when the task's progress (`Task.progress`; pick_cube: the TCP closing on the
    cube, then the cube rising) has not improved for `patience` steps, as a person watching a stuck
    robot would;
  - "schedule": step in at step `start_step` of an episode.
Either way a take-over happens with probability `rate` (so a person who helps on only some episodes
can be modelled), lasts up to `duration` steps (hand-back earlier on success), and at most
`max_per_episode` take-overs happen in one episode. Rate 0 never intervenes.
"""

from __future__ import annotations

import numpy as np

from robot_rl.data.schema import EpisodeLabel
from robot_rl.tasks import make_expert
from robot_rl.teleop.device import DeviceCommand, TeleopDevice

RULES = ("stall", "schedule")


class SimulatedOperator(TeleopDevice):
    """The scripted expert of a sim env acting as a person on a teleop device."""

    def __init__(
        self,
        env,
        rule: str = "stall",
        rate: float = 1.0,
        patience: int = 8,
        duration: int = 8,
        start_step: int = 10,
        max_per_episode: int = 3,
        noise: float = 0.1,
        min_progress: float = 0.005,
        discard_rate: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> None:
        """`env`: the sim env the operator watches (any wrapper of a RobotEnv with a scripted expert).
        `min_progress`: metres of progress that count as progress for the stall rule.
        `discard_rate`: chance of pressing DISCARD at the end of an episode's take-over (tests labels)."""
        if rule not in RULES:
            raise ValueError(f"simulated operator rule must be one of {', '.join(RULES)}, got {rule!r}")
        if not 0.0 <= rate <= 1.0 or not 0.0 <= discard_rate <= 1.0:
            raise ValueError(f"simulated operator rate and discard_rate must be in [0, 1], got {rate}, {discard_rate}")
        if patience < 1 or duration < 1 or max_per_episode < 0:
            raise ValueError("simulated operator patience and duration must be >= 1, max_per_episode >= 0")
        self.rng = rng if rng is not None else np.random.default_rng()
        self.env = env.unwrapped
        self.expert = make_expert(self.env, noise=noise, rng=self.rng)
        self.rule, self.rate, self.patience, self.duration = rule, float(rate), int(patience), int(duration)
        self.start_step, self.max_per_episode = int(start_step), int(max_per_episode)
        self.min_progress, self.discard_rate = float(min_progress), float(discard_rate)
        self.reset()

    def reset(self) -> None:
        self.best_progress = -np.inf
        self.stalled_steps = 0
        self.remaining = 0  # steps left in the current take-over
        self.takeovers = 0
        self.decided_schedule = False

    def progress(self) -> float:
        """How far the task has come, in metres (the task's `progress`: pick_cube's reach and lift)."""
        return self.env.task.progress(self.env.robot)

    def _wants_in(self) -> bool:
        if self.takeovers >= self.max_per_episode:
            return False
        if self.rule == "schedule":
            if self.decided_schedule or self.env.elapsed_steps < self.start_step:
                return False
            self.decided_schedule = True
            return bool(self.rng.random() < self.rate)
        progress = self.progress()
        if progress > self.best_progress + self.min_progress:
            self.best_progress, self.stalled_steps = progress, 0
            return False
        self.stalled_steps += 1
        if self.stalled_steps < self.patience:
            return False
        self.stalled_steps = 0
        return bool(self.rng.random() < self.rate)

    def read(self) -> DeviceCommand:
        label = EpisodeLabel.NONE
        if self.remaining == 0 and self._wants_in():
            self.remaining = self.duration
            self.takeovers += 1
            self.expert.reset()
        if self.remaining == 0:
            return DeviceCommand(np.zeros(4, np.float32))
        self.remaining -= 1
        action = self.expert.act()
        if self.env.task.evaluate(self.env.robot)[1]:
            self.remaining = 0  # the task succeeded: hand back
        if self.remaining == 0:
            self.best_progress, self.stalled_steps = self.progress(), 0
            if self.discard_rate and self.rng.random() < self.discard_rate:
                label = EpisodeLabel.DISCARD
        return DeviceCommand(action, active=True, label=label, buttons=frozenset({"sim_operator"}))
