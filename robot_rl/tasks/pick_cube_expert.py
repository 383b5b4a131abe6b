"""pick_cube's scripted expert: reads privileged sim state (for demos, the simulated operator and tests)."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

APPROACH, DESCEND, GRASP, LIFT = "approach", "descend", "grasp", "lift"


class ScriptedPickExpert:
    """Approach above the cube, descend, close, lift. Actions are in [-1, 1] with the task's layout:
    translation xyz, zero rotation when the task acts in rotation, gripper last.

    `env`: the RobotEnv (anything with `task`, `robot` and `elapsed_steps`). Reads the TCP and cube
    positions from the robot (privileged state), so it works whatever the observation holds. `noise` adds
    Gaussian noise (std, in action units) to the xyz part. Where the task's actions run `task.latency` control
    steps late (a latency perturbation), it plans from where the moves it sent but that have not run yet will
    take the TCP (as a person adapts to a delay), so it neither overshoots nor oscillates.
    """

    def __init__(
        self,
        env: Any,
        noise: float = 0.0,
        rng: np.random.Generator | None = None,
        hover: float = 0.05,
        lift_extra: float = 0.05,
        gain: float = 0.8,
        max_action: float = 0.7,
    ) -> None:
        self.env = env
        self.noise = float(noise)
        self.rng = rng if rng is not None else np.random.default_rng()
        self.hover = hover
        self.lift_extra = lift_extra
        self.gain = gain
        self.max_action = max_action
        self.reset()

    def reset(self) -> None:
        """Start a new episode from the approach phase."""
        self.phase = APPROACH
        self.grasp_steps = 0
        self.pending: deque[np.ndarray] = deque()  # the xyz moves sent that have not run yet (latency)

    def act(self, obs: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The next action; `obs` is unused (the expert reads the simulator directly)."""
        if self.env.elapsed_steps == 0:  # first step of a new episode
            self.reset()
        task, robot = self.env.task, self.env.robot
        s = robot.read_state()
        tcp, ahead = self.plan(s)
        cube = robot.object_pos(task.cube_name)
        xy_err = float(np.linalg.norm(cube[:2] - s.tcp_pos[:2]))
        rest_z = task.rest_z
        gripper = -1.0

        if self.phase in (GRASP, LIFT) and (
            np.linalg.norm(cube - s.tcp_pos) > 0.03 or s.gripper_opening < task.cube_half_size
        ):
            self.reset()  # lost the cube (or closed on nothing): try again
        if self.phase == APPROACH:
            target = np.array([cube[0], cube[1], rest_z + self.hover])
            if xy_err < 0.01:
                self.phase = DESCEND
        if self.phase == DESCEND:
            target = np.array([cube[0], cube[1], cube[2]])
            if xy_err > 0.02:
                self.phase = APPROACH
                target = np.array([cube[0], cube[1], rest_z + self.hover])
            elif abs(s.tcp_pos[2] + ahead[2] - cube[2]) < 0.006:  # arrived once the moves in flight ran
                self.phase = GRASP
        if self.phase == GRASP:
            target, gripper = s.tcp_pos + ahead, 1.0
            self.grasp_steps += 1
            if self.grasp_steps >= 2 and s.gripper_opening < 2 * task.cube_half_size + 0.002:
                self.phase = LIFT
        if self.phase == LIFT:
            target = np.array([cube[0], cube[1], rest_z + task.lift_height + self.lift_extra])
            gripper = 1.0

        return self.command(target, tcp, gripper)

    def plan(self, s) -> tuple[np.ndarray, np.ndarray]:
        """(the TCP position to plan from, the xyz motion still in flight) for robot state `s`: the TCP a
        moment ahead (tracking lag) plus the moves sent that have not run yet (`task.latency`)."""
        latency = int(getattr(self.env.task, "latency", 0))
        while len(self.pending) > latency:
            self.pending.popleft()
        ahead = self.env.task.action_scale * sum(self.pending, np.zeros(3))  # where the moves still in flight go
        return s.tcp_pos + 0.05 * s.tcp_vel + ahead, ahead

    def command(self, target: np.ndarray, tcp: np.ndarray, gripper: float) -> np.ndarray:
        """The action moving the TCP from `tcp` toward `target` (m) with gripper command `gripper` (-1 open,
        +1 closed), with the expert's noise; remembered as in flight when the task's actions run late."""
        task = self.env.task
        # Moves at up to `max_action` of the range and commands the gripper at +-max_action (enough to
        # open fully / squeeze the cube): demo actions that sit on the [-1, 1] bounds would let a critic
        # tell demo from policy actions by magnitude alone, and the actor would learn to saturate.
        xyz = np.clip(self.gain * (target - tcp) / task.action_scale, -self.max_action, self.max_action)
        if self.noise > 0:
            xyz = xyz + self.rng.normal(0.0, self.noise, size=3)
        action = np.zeros(task.action_space.shape, dtype=np.float32)  # rotation (when acted in) stays 0
        action[:3] = np.clip(xyz, -1.0, 1.0)
        if int(getattr(task, "latency", 0)):
            self.pending.append(action[:3].astype(np.float64))
        action[-1] = gripper * self.max_action
        return action
