"""peg_insert's scripted expert: reads privileged sim state (for demos, the simulated operator and tests)."""

from __future__ import annotations

from typing import Any

import numpy as np

ALIGN, DESCEND = "align", "descend"


class ScriptedInsertExpert:
    """Turn the peg to the hole's yaw (modulo 90 deg) and bring its tip above the hole entrance, then descend
    and push it in, keeping the tip centred over the hole; it enters slowly and backs up to align again when the
    wrist feels the peg land on the hole's edge. It servos the peg tip, not the TCP, so the peg's
    offset in the hand (the reset's grasp noise, a slip) is planned for. The gripper stays closed.

    `env`: the RobotEnv (anything with `task`, `robot` and `elapsed_steps`). `noise` adds Gaussian noise (std,
    in action units) to the six motion entries. Actions stay within `max_action` of the range (the gripper
    command too), like pick_cube's expert, so that demo actions do not sit on the bounds.
    """

    def __init__(
        self,
        env: Any,
        noise: float = 0.0,
        rng: np.random.Generator | None = None,
        hover: float = 0.01,
        gain: float = 0.8,
        yaw_gain: float = 0.8,
        max_action: float = 0.7,
        align_tol: float = 0.0015,
        yaw_tol: float = 0.03,
        entry_speed: float = 0.006,
        max_force: float = 10.0,
    ) -> None:
        self.env = env
        self.noise = float(noise)
        self.rng = rng if rng is not None else np.random.default_rng()
        self.hover = hover  # tip height above the entrance while aligning (m)
        self.gain = gain
        self.yaw_gain = yaw_gain
        self.max_action = max_action
        self.align_tol = align_tol  # tip-to-hole-axis distance (m) below which the descent starts
        self.yaw_tol = yaw_tol  # relative yaw (rad) below which the descent starts
        self.entry_speed = entry_speed  # m per control step of descent until the tip is in the hole
        self.max_force = max_force  # N on the wrist before the tip is in: landed on the edge, back up
        self.reset()

    def reset(self) -> None:
        """Start a new episode from the alignment phase."""
        self.phase = ALIGN

    def act(self, obs: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The next action; `obs` is unused (the expert reads the simulator directly)."""
        if self.env.elapsed_steps == 0:
            self.reset()
        task, robot = self.env.task, self.env.robot
        s = robot.read_state()
        entrance, hole_rot = task.hole_frame(robot)
        tip = task.peg_tip(robot) + 0.05 * s.tcp_vel  # compensate for the tracking lag
        rel = hole_rot.T @ (tip - entrance)  # tip in the hole's frame
        across = float(np.linalg.norm(rel[:2]))
        yaw = task.relative_yaw(robot)
        if self.phase == ALIGN and across < self.align_tol and abs(yaw) < self.yaw_tol and rel[2] < 2 * self.hover:
            self.phase = DESCEND
        entering = rel[2] > -0.003  # the tip has not yet passed the hole's edge
        pressing = float(np.linalg.norm(task.wrench(robot)[:3])) > self.max_force
        if self.phase == DESCEND and entering and (across > 3 * self.align_tol or pressing):
            self.phase = ALIGN  # drifted off, or landed on the edge, before entering: back up and align again
        goal = np.array([0.0, 0.0, self.hover if self.phase == ALIGN else -(task.insert_depth + 0.01)])
        if self.phase == ALIGN and across > 0.01:
            goal[2] = max(self.hover, float(rel[2]))  # move across at the current height, never lower
        move = hole_rot @ (goal - rel)  # world-frame tip displacement
        xyz = np.clip(self.gain * move / task.action_scale, -self.max_action, self.max_action)
        if self.phase == DESCEND and entering:  # enter slowly: a noisy step lands on the edge less hard
            xyz[2] = max(xyz[2], -self.entry_speed / task.action_scale)
        rz = float(np.clip(self.yaw_gain * yaw / task.rotation_scale, -self.max_action, self.max_action))
        # keep the gripper pointing down: undo any tilt of the orientation target
        back = robot.rotation_to_home()
        tilt = np.zeros(2) if back is None else np.clip(back[:2] / task.rotation_scale, -0.3, 0.3)
        motion = np.concatenate([xyz, tilt, [rz]])
        if self.noise > 0:
            motion = motion + self.rng.normal(0.0, self.noise, size=6)
        action = np.empty(task.action_space.shape, dtype=np.float32)
        action[:6] = np.clip(motion, -1.0, 1.0)
        action[-1] = self.max_action  # closed (sticky: above the threshold)
        return action
