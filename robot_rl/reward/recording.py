"""What the sim labelling episodes do: a mix of episode kinds that gives a success classifier both
classes and the failures it would otherwise confuse with success.

- `lift`: the scripted expert grasps the cube and holds it at a height in `lift_range` (success frames
  once it crosses the task's line, failure frames before).
- `partial`: the expert holds the cube at a height in `partial_lift_range`, below the line: failures
  that differ from success only in height.
- `empty`: the arm goes down near the cube without grasping it, then rises to a height in `lift_range`
  with the gripper open or closed: failures where the arm looks like a lift but holds no cube (the
  false positive an RL policy would find first).
"""

from __future__ import annotations

import numpy as np

from robot_rl.tasks import make_expert

KINDS = ("lift", "partial", "empty", "policy")


def episode_kinds(episodes: int, partial_share: float, empty_share: float, rng: np.random.Generator) -> list[str]:
    """`episodes` kinds: round(share * episodes) partial and empty ones, the rest lift, in random order."""
    if min(partial_share, empty_share) < 0 or partial_share + empty_share > 1:
        raise ValueError(f"partial_share={partial_share} and empty_share={empty_share} must be >= 0 with a sum <= 1")
    partial = int(round(partial_share * episodes))
    empty = min(int(round(empty_share * episodes)), episodes - partial)
    kinds = ["partial"] * partial + ["empty"] * empty + ["lift"] * (episodes - partial - empty)
    return [kinds[i] for i in rng.permutation(episodes)]


class EmptyReach:
    """Down to just above the table near the cube (gripper open), then up to a lifting height without
    the cube, the gripper closed (on nothing) or open once above the cube; waypoints drawn per episode.
    Reads the cube position from the simulator, like the expert."""

    def __init__(
        self,
        env,
        rng: np.random.Generator,
        height_range: tuple[float, float],
        noise: float = 0.1,
        gain: float = 0.8,
        max_action: float = 0.7,
    ) -> None:
        self.env, self.rng = env.unwrapped, rng
        self.height_range, self.noise, self.gain, self.max_action = height_range, float(noise), gain, max_action

    def plan(self) -> None:
        task, robot = self.env.task, self.env.robot
        cube = robot.object_pos(task.cube_name)
        self.switch = int(self.rng.integers(8, 30))
        low = np.r_[cube[:2] + self.rng.uniform(-0.04, 0.04, 2), task.rest_z + self.rng.uniform(0.0, 0.05)]
        high = np.r_[cube[:2] + self.rng.uniform(-0.06, 0.06, 2), task.rest_z + self.rng.uniform(*self.height_range)]
        self.waypoints = (robot.clip_to_workspace(low), robot.clip_to_workspace(high))
        self.gripper = float(self.rng.choice([-1.0, 1.0]))  # closed on nothing, or open

    def act(self, obs: dict[str, np.ndarray] | None = None) -> np.ndarray:
        if self.env.elapsed_steps == 0:
            self.plan()
        rising = self.env.elapsed_steps >= self.switch
        s = self.env.robot.read_state()
        target = self.waypoints[int(rising)]
        xyz = np.clip(
            self.gain * (target - (s.tcp_pos + 0.05 * s.tcp_vel)) / self.env.task.action_scale,
            -self.max_action,
            self.max_action,
        )
        xyz = xyz + self.rng.normal(0.0, self.noise, 3)
        # the gripper closes only well above the cube, so it never picks the cube up by chance
        above = s.tcp_pos[2] > self.env.task.rest_z + 3 * self.env.task.cube_half_size
        gripper = self.gripper if rising and above else -1.0
        return np.r_[np.clip(xyz, -1.0, 1.0), gripper * self.max_action].astype(np.float32)


class LabelPolicies:
    """The act function of each episode kind; `act_for(kind)` also sets the expert's holding height."""

    def __init__(
        self,
        env,
        rng: np.random.Generator,
        noise: float,
        lift_range: tuple[float, float],
        partial_lift_range: tuple[float, float],
    ) -> None:
        self.expert = make_expert(env, noise=noise, rng=rng)
        self.empty = EmptyReach(env, rng, lift_range, noise)
        self.rng, self.line = rng, float(env.unwrapped.task.lift_height)
        self.ranges = {"lift": lift_range, "partial": partial_lift_range}
        self.policy = None  # a trained policy's act function (a run's latest checkpoint), for the "policy" kind

    def act_for(self, kind: str):
        if kind == "policy":
            return self.policy
        if kind == "empty":
            return self.empty.act
        # the expert lifts the cube to lift_height + lift_extra
        self.expert.lift_extra = float(self.rng.uniform(*self.ranges[kind])) - self.line
        return self.expert.act
