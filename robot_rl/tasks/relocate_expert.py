"""relocate's scripted expert: pick_cube's grasp (robot_rl/tasks/pick_cube_expert.py), then carry, place, let go."""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_rl.tasks.pick_cube_expert import APPROACH, DESCEND, GRASP, LIFT, ScriptedPickExpert

CARRY, PLACE, RELEASE = "carry", "place", "release"


class ScriptedRelocateExpert(ScriptedPickExpert):
    """Grasp as pick_cube's expert does (approach, descend, close, lift), then carry the cube `carry_height` above
    the table to the goal region's centre, lower it onto the table and open until the task reports success.
    A cube lost on the way (dropped, knocked) starts the grasp again. Reads privileged sim state."""

    def __init__(
        self, env: Any, noise: float = 0.0, rng: np.random.Generator | None = None, carry_height: float = 0.05
    ):
        """`carry_height` (m): how high above its resting height the cube travels."""
        self.carry_height = float(carry_height)
        super().__init__(env, noise=noise, rng=rng)

    def act(self, obs: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The next action; `obs` is unused (the expert reads the simulator directly)."""
        if self.env.elapsed_steps == 0:
            self.reset()
        task, robot = self.env.task, self.env.robot
        cube = robot.object_pos(task.cube_name)
        if self.phase in (APPROACH, DESCEND, GRASP, LIFT):
            if not (self.phase == LIFT and cube[2] - task.rest_z >= 0.6 * self.carry_height):
                return super().act(obs)  # the grasp, up to a lift high enough to carry
            self.phase = CARRY
        s = robot.read_state()
        tcp, ahead = self.plan(s)
        if self.phase in (CARRY, PLACE) and (
            np.linalg.norm(cube - s.tcp_pos) > 0.03 or s.gripper_opening < task.cube_half_size
        ):
            self.reset()  # lost the cube: grasp again
            return super().act(obs)
        goal = task.goal_region
        if self.phase == CARRY:
            target = np.array([goal[0], goal[1], task.rest_z + self.carry_height])
            if np.linalg.norm(cube[:2] - goal) < 0.005:
                self.phase = PLACE
        if self.phase == PLACE:
            target = np.array([goal[0], goal[1], task.rest_z - 0.005])  # press down a little: contact, not a drop
            if cube[2] - task.rest_z < 0.003:
                self.phase = RELEASE
        if self.phase == RELEASE:
            return self.command(s.tcp_pos + ahead, tcp, -1.0)  # hold still and open
        return self.command(target, tcp, 1.0)
