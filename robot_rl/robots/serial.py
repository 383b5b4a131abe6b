"""SerialRobot: an arm on bus servos behind our firmware (firmware/), driven over a serial link.

One `apply_action` (one control period, e.g. 10 Hz):
  1. the TCP target moves by the commanded delta (re-anchored to the measured TCP when the arm lags,
     clipped to the workspace), as in the sim;
  2. inverse kinematics on the arm's MJCF model (MuJoCo kinematics only: robot_rl/robots/kinematics.py)
     turns it into joint targets;
  3. the host streams joint targets interpolated over the period at `command_hz` (100 Hz by default,
     HIL-SERL's inner-loop rate), one JOINT_COMMAND each; every command is answered by a STATE, and the
     last one is the step's proprioception.
The firmware clamps every target to the calibrated joint limits, bounds each step and the joint speed,
holds the arm when commands stop for `watchdog_ms` and latches its e-stop; the host never has to be
trusted. Between control periods (the learner's updates) the host is silent for a few tens of ms:
with the default 100 ms watchdog the arm simply holds in place if the gap grows longer, and the next
command resumes from where it held.

`port` names the serial device (/dev/ttyUSB0, /dev/serial/by-id/...), or `sim`: the firmware-in-the-loop
rig (robot_rl/hardware/rig.py): the host build of the real firmware on a pseudo-terminal, its servo bus
answered by a MuJoCo plant of the same arm. There, what no serial link carries (the cube's pose, camera
frames) comes from the plant the way a tracking system and a camera would (`object_pos`, `render`).

Faults surface as `RobotUnavailable` with a one-line reason: a lost link (the next `reset` reconnects and
the episode in progress ends), a latched e-stop or fault (a person clears it: `robot-rl check-hardware
robot=serial clear=true` after releasing the e-stop).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco loads: its OpenGL backend is chosen then

import mujoco  # noqa: E402
import numpy as np

from robot_rl.config import UserError
from robot_rl.hardware import protocol
from robot_rl.hardware.calibration import (
    Calibration,
    JointCalibration,
    default_path,
    load_calibration,
    servo_joints,
)
from robot_rl.hardware.firmware import FirmwareClient, FirmwareError, JointConfig
from robot_rl.hardware.link import LinkError, SerialLink
from robot_rl.robots.arms import ArmModel, get_arm, gripper_joint_from_opening
from robot_rl.robots.base import Robot, RobotState, RobotUnavailable
from robot_rl.robots.kinematics import ArmKinematics, resolve_model_path

if TYPE_CHECKING:
    from robot_rl.hardware.rig import SimRig

SIM_PORT = "sim"
RESET_TOL = 0.02  # rad (and rad/s): a reset is done when every arm joint is this close to its goal, and still
RESET_SETTLE_S = 3.0  # after the move, how long the arm may take to get there


def sim_rig(arm: ArmModel | str, plant: bool = True, **options) -> SimRig:
    """The simulated rig of `arm`: the host firmware with its servos, the arm's joints then the gripper, on a
    MuJoCo plant of the arm's model (the gripper mapped as the arm maps it), or with `plant=False` on the
    firmware's own servo-bus emulator. `options`: SimRig's (seed, tick_hz, bus_timeout_us)."""
    from robot_rl.hardware.rig import SimRig

    arm = get_arm(arm)
    return SimRig(
        resolve_model_path(default=arm.mjcf) if plant else None,
        servo_joints(arm.arm_joints),
        gripper_open=gripper_joint_from_opening(arm, arm.max_opening),
        jaw_length=arm.gripper_jaw_length,
        **options,
    )


def servo_ranges(kinematics: ArmKinematics) -> list[tuple[float, float]]:
    """Each servo's range in the arm model (rad), in bus order: the joints' limits (just inside the hard
    ones), then the gripper joint's range."""
    lo, hi = kinematics.joint_limits
    return [*zip(lo.tolist(), hi.tolist(), strict=True), tuple(kinematics.arm.gripper_joint_range)]


def rig_calibration(kinematics: ArmKinematics, rig: SimRig) -> Calibration:
    """A sim rig's arm as `robot-rl calibrate` would measure it: the plant's hidden offsets and directions,
    the model's ranges."""
    arm = kinematics.arm
    joints = tuple(
        JointCalibration(name, servo_id, direction, offset, lo, hi)
        for name, (servo_id, offset, direction), (lo, hi) in zip(
            servo_joints(arm.arm_joints), rig.true_calibration(), servo_ranges(kinematics), strict=True
        )
    )
    return Calibration(arm.name, "sim", joints)


class SerialRobot(Robot):
    """An arm behind the firmware on `port` (see the module docstring)."""

    supports_rotation = False
    _open: ClassVar[dict[str, SerialRobot]] = {}  # port -> the robot open on it (`shared`)

    @classmethod
    def shared(cls, **cfg) -> SerialRobot:
        """The robot already open on `cfg["port"]` in this process (same config), else a new one: a port
        opens once, and a training run's actor and eval envs drive the same arm."""
        port = str(cfg.get("port", SIM_PORT))
        robot = cls._open.get(port)
        if robot is None:
            robot = cls(**cfg)
            robot._config = dict(cfg)
            cls._open[port] = robot
        elif robot._config != cfg:
            raise UserError(f"serial port {port} is open with another robot config: one config per port")
        robot._users += 1
        return robot

    def __init__(
        self,
        port: str = SIM_PORT,
        model: str = "so101",
        id: str = "default",  # noqa: A002 (the arm's name in its calibration file)
        calibration: str | None = None,
        baud: int = protocol.DEFAULT_BAUD,
        control_dt: float = 0.1,
        command_hz: float = 100.0,
        workspace: tuple | None = None,
        reanchor_dist: float = 0.04,
        watchdog_ms: int = 100,
        stop_action: str = "hold",
        joint_speed: float = 3.0,
        gripper_speed: float = 8.0,
        step_max: float = 0.2,
        max_temp_c: float = 65.0,
        reset_joint_speed: float = 1.0,
        reconnect_timeout: float = 10.0,
        disarm_on_close: bool = True,
        render_size: tuple[int, int] = (128, 128),
        cameras: dict | None = None,
        max_frame_age: float = 0.25,
        rig: dict | None = None,
    ) -> None:
        """`calibration`: the arm's calibration file (default: ~/.config/robot_rl/calibration/<model>-<id>.json;
        the sim rig's own when `port=sim`). `joint_speed`/`gripper_speed` (rad/s) and `step_max` (rad per
        command) are enforced by the firmware. `cameras`: name -> Camera options (robot_rl/hardware/camera.py;
        `source` at least), captured at `render_size`; a frame older than `max_frame_age` s is refused. `rig`:
        options of the sim rig (robot_rl/hardware/rig.py), whose plant renders the cameras instead."""
        self._users, self._config = 0, {}
        self.arm = get_arm(model)
        self.kinematics = ArmKinematics(self.arm)
        self.port = str(port)
        self.control_dt = float(control_dt)
        self.n_commands = max(1, int(round(self.control_dt * float(command_hz))))
        if self.control_dt <= 0 or command_hz <= 0:
            raise UserError(f"control_dt {control_dt} and command_hz {command_hz} must be positive")
        lo, hi = workspace if workspace is not None else self.arm.workspace
        self.workspace = (np.asarray(lo, dtype=np.float64).copy(), np.asarray(hi, dtype=np.float64).copy())
        self.gripper_max_opening = self.arm.max_opening
        self.reanchor_dist = float(reanchor_dist)
        if stop_action not in ("hold", "torque_off"):
            raise UserError(f"robot.stop_action={stop_action!r}: choose hold or torque_off")
        self.watchdog_ms = int(watchdog_ms)
        self.stop_action = protocol.StopAction.HOLD if stop_action == "hold" else protocol.StopAction.TORQUE_OFF
        self.joint_speed, self.gripper_speed = float(joint_speed), float(gripper_speed)
        self.step_max, self.max_temp_c = float(step_max), float(max_temp_c)
        self.reset_joint_speed = float(reset_joint_speed)
        self.reconnect_timeout = float(reconnect_timeout)
        self.disarm_on_close = bool(disarm_on_close)
        self.render_size = tuple(render_size)

        self.rig = self.cameras = self.link = None
        try:
            self._open_all(id, calibration, baud, cameras, max_frame_age, rig)
        except BaseException:
            self.close()
            raise

    def _open_all(self, arm_id, calibration, baud, cameras, max_frame_age, rig) -> None:
        """Start the rig (port=sim), load the calibration, start the cameras, connect and arm."""
        if self.port == SIM_PORT:
            self.rig = sim_rig(self.arm, **(rig or {}))
            link_port = self.rig.link_path
            self.calibration = self.rig_calibration() if calibration is None else self._load(calibration)
        else:
            link_port = self.port
            self.calibration = self._load(calibration or default_path(self.arm.name, arm_id))
        self.max_frame_age = float(max_frame_age)
        self._frame_ages: list[float] = []
        if cameras:
            from robot_rl.hardware.camera import CameraSet

            self.cameras = CameraSet.from_config(cameras, size=self.render_size, max_age=self.max_frame_age)
        self.link = SerialLink(link_port, baud=int(baud), open_now=False)
        self.firmware = FirmwareClient(self.link)
        self.last_state: protocol.State | None = None
        self._q_target = np.zeros(self.n_servos)
        self.tcp_target = self.kinematics.home_tcp_pos.copy()
        if self.cameras is not None:
            self.cameras.start(wait_first=5.0)
        self.connect()

    # ------------------------------------------------------------------ set-up
    @property
    def home_tcp_pos(self) -> np.ndarray:
        """The TCP position at the arm model's home posture."""
        return self.kinematics.home_tcp_pos.copy()

    @property
    def servo_names(self) -> tuple[str, ...]:
        """The servos in bus order: the arm joints, then the gripper."""
        return servo_joints(self.arm.arm_joints)

    @property
    def n_servos(self) -> int:
        return len(self.servo_names)

    def rig_calibration(self) -> Calibration:
        """The sim rig's arm as `robot-rl calibrate` would measure it."""
        return rig_calibration(self.kinematics, self.rig)

    def _load(self, path: str | os.PathLike) -> Calibration:
        return load_calibration(Path(path).expanduser(), self.arm.name, self.servo_names)

    def joint_configs(self) -> list[JointConfig]:
        """What the firmware enforces per servo: the calibration's map and limits, the speed and step bounds."""
        configs = []
        for i, joint in enumerate(self.calibration.joints):
            gripper = i == self.n_servos - 1
            configs.append(
                JointConfig(
                    joint=i,
                    servo_id=joint.servo_id,
                    direction=joint.direction,
                    offset_ticks=joint.offset_ticks,
                    ticks_per_rev=self.calibration.ticks_per_rev,
                    pos_min=joint.pos_min,
                    pos_max=joint.pos_max,
                    vel_max=self.gripper_speed if gripper else self.joint_speed,
                    step_max=self.step_max,
                    max_temp_c=self.max_temp_c,
                )
            )
        return configs

    def connect(self) -> None:
        """Open the link, check the firmware, configure it (disarmed) and arm. A latched e-stop or fault
        raises RobotUnavailable: a person clears it."""
        self.link.open()
        hello = self.firmware.hello()
        if hello.n_joints != self.n_servos:
            raise UserError(
                f"the firmware on {self.port} drives {hello.n_joints} servos, arm {self.arm.name} has "
                f"{self.n_servos}: flash it for this arm (firmware/README.md)"
            )
        state = self.firmware.heartbeat()
        if state.mode in (protocol.Mode.ESTOP, protocol.Mode.FAULT):
            raise RobotUnavailable(self._latched_reason(state))
        if state.mode == protocol.Mode.ARMED and self.last_state is not None:
            self._update(state)  # back after a lost link: armed and holding with this process's configuration
            self._q_target = self._measured_q().copy()
            self.tcp_target = self.read_tcp()
            return
        if state.mode == protocol.Mode.ARMED:
            self.firmware.disarm()  # configuration needs the arm disarmed
        self.firmware.configure(self.watchdog_ms, self.stop_action)
        for config in self.joint_configs():
            self.firmware.configure_joint(config)
        self._arm()

    def _arm(self) -> None:
        try:
            self.firmware.arm()
        except FirmwareError as err:
            raise RobotUnavailable(f"{self.port}: {err}") from None
        self._update(self.firmware.heartbeat())
        self._q_target = self._measured_q().copy()
        self.tcp_target = self.read_tcp()

    def _latched_reason(self, state: protocol.State) -> str:
        what = "e-stop" if state.mode == protocol.Mode.ESTOP else f"fault {state.fault.name}"
        return (
            f"{what} latched on {self.port}: release the e-stop / fix the cause, then clear it with "
            f"`robot-rl check-hardware robot=serial robot.port={self.port} clear=true`"
        )

    def reconnect(self) -> None:
        """After a lost link: wait for the port to come back (`reconnect_timeout`), then connect again."""
        try:
            self.link.reconnect(self.reconnect_timeout)
        except LinkError as err:
            raise RobotUnavailable(f"serial link {self.port} lost and not back: {err}") from None
        self.connect()

    # ------------------------------------------------------------------ state
    def _update(self, state: protocol.State) -> protocol.State:
        if state.mode in (protocol.Mode.ESTOP, protocol.Mode.FAULT):
            self.last_state = state
            raise RobotUnavailable(self._latched_reason(state))
        if state.mode != protocol.Mode.ARMED:
            self.last_state = state
            raise RobotUnavailable(f"the arm on {self.port} is {state.mode.name.lower()}: reset to arm it again")
        self.last_state = state
        return state

    def _measured_q(self) -> np.ndarray:
        return np.array([j.pos for j in self.last_state.joints])

    def read_tcp(self) -> np.ndarray:
        """The measured TCP position (forward kinematics of the measured joints)."""
        return self.kinematics.fk(self._measured_q()[:-1])[0]

    def _robot_state(self) -> RobotState:
        q = self._measured_q()
        qd = np.array([j.vel for j in self.last_state.joints])
        pos, _ = self.kinematics.fk(q[:-1])
        jac = self.kinematics.jacobian(q[:-1])
        opening = min(self.kinematics.gripper_opening_from_joint(q[-1]), self.gripper_max_opening)
        return RobotState(
            tcp_pos=pos, tcp_vel=jac[:3] @ qd[:-1], gripper_opening=opening, joint_pos=q[:-1], joint_vel=qd[:-1]
        )

    def _talk(self, request) -> protocol.State:
        """`request()`'s STATE, checked (`_update`); a link that is lost or silent is RobotUnavailable."""
        try:
            return self._update(request())
        except LinkError as err:
            raise RobotUnavailable(f"serial link {self.port}: {err}; the arm holds (firmware watchdog)") from None

    def _command(self, q: np.ndarray) -> protocol.State:
        return self._talk(lambda: self.firmware.command(q))

    def _stream(self, q_from: np.ndarray, q_to: np.ndarray, n: int) -> None:
        """Send `n` commands interpolating q_from -> q_to, one every 1/command_hz."""
        period = self.control_dt / self.n_commands
        deadline = time.monotonic()
        for k in range(1, n + 1):
            self._command(q_from + (q_to - q_from) * (k / n))
            deadline += period
            pause = deadline - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    # ------------------------------------------------------------------ Robot API
    def apply_action(self, tcp_delta: np.ndarray, gripper: float, rot_delta: np.ndarray | None = None) -> RobotState:
        """Move the TCP target by `tcp_delta` (m), set the gripper (-1 open .. +1 closed) and stream one
        control period of joint commands. Non-finite input raises ValueError before anything is sent."""
        delta = np.asarray(tcp_delta, dtype=np.float64)
        if delta.shape != (3,) or not np.all(np.isfinite(delta)) or not np.isfinite(float(gripper)):
            raise ValueError(f"apply_action got tcp_delta {delta.tolist()} and gripper {gripper}: nothing sent")
        if rot_delta is not None:
            raise ValueError(f"arm {self.arm.name} takes no rotation (5 joints): use a task with rotation=false")
        self._frame_ages.clear()
        measured = self.read_tcp()
        offset = self.tcp_target - measured
        dist = float(np.linalg.norm(offset))
        target = measured + offset * (self.reanchor_dist / dist) if dist > self.reanchor_dist else self.tcp_target
        self.tcp_target = np.clip(target + delta, *self.workspace)
        q_prev = self._q_target
        q_new = q_prev.copy()
        q_new[:-1] = self.kinematics.solve_ik(self.tcp_target, q_prev[:-1])
        opening = self.gripper_max_opening * (1.0 - float(np.clip(gripper, -1.0, 1.0))) / 2.0
        q_new[-1] = self.kinematics.gripper_joint_from_opening(opening)
        self._q_target = q_new
        self._stream(q_prev, q_new, self.n_commands)
        return self._robot_state()

    def read_state(self) -> RobotState:
        self._talk(self.firmware.heartbeat)
        return self._robot_state()

    def reset(self, tcp_pos: np.ndarray | None = None) -> RobotState:
        """A joint-space move (at most `reset_joint_speed` rad/s) to the IK solution of `tcp_pos` (home
        when None) with the home orientation, gripper open; reconnects and re-arms first when needed."""
        if tcp_pos is not None and not np.all(np.isfinite(np.asarray(tcp_pos, dtype=np.float64))):
            raise ValueError(f"reset tcp_pos {np.asarray(tcp_pos).tolist()} is not finite: nothing moved")
        try:
            state = self.firmware.heartbeat()
        except LinkError:  # lost (or closed after a loss): wait for the port, then connect again
            self.reconnect()
            state = self.firmware.heartbeat()
        if state.mode != protocol.Mode.ARMED:
            self.connect()  # configure (a rebooted board forgot it) and arm; a latched e-stop or fault raises
        else:
            self._update(state)
        self._frame_ages.clear()
        q_now = self._measured_q()
        goal = np.empty(self.n_servos)
        if tcp_pos is None:
            goal[:-1] = self.kinematics.home_q
            target = self.kinematics.home_tcp_pos.copy()
        else:
            target = np.clip(np.asarray(tcp_pos, dtype=np.float64), *self.workspace)
            goal[:-1] = self.kinematics.solve_ik(target, self.kinematics.home_q, iters=100, damping=1e-3, tol=1e-6)
        goal[-1] = self.kinematics.gripper_joint_from_opening(self.gripper_max_opening)
        speed = min(self.reset_joint_speed, self.joint_speed)
        span = float(np.max(np.abs(goal[:-1] - q_now[:-1]))) / speed
        n = max(1, int(np.ceil(span / (self.control_dt / self.n_commands))))
        self._stream(q_now, goal, n)
        self._q_target = goal
        for _ in range(int(np.ceil(RESET_SETTLE_S / self.control_dt))):  # hold the goal until the arm is there
            self._stream(goal, goal, self.n_commands)
            q, qd = self._measured_q(), np.array([j.vel for j in self.last_state.joints])
            if np.max(np.abs(q[:-1] - goal[:-1])) < RESET_TOL and np.max(np.abs(qd[:-1])) < RESET_TOL:
                break
        else:
            raise RobotUnavailable(
                f"reset on {self.port}: joints {np.round(q[:-1], 3).tolist()} did not reach "
                f"{np.round(goal[:-1], 3).tolist()} within {RESET_SETTLE_S:g} s (blocked? check-hardware shows loads)"
            )
        self.tcp_target = target
        return self._robot_state()

    def stop(self) -> None:
        """Hold where the arm is (one command to the measured position)."""
        if self.last_state is not None and self.link.is_open:
            self._q_target = self._measured_q().copy()
            try:
                self.firmware.command(self._q_target)
            except LinkError:
                pass  # the firmware's watchdog holds it

    def close(self) -> None:
        """Disarm (torque off, LeRobot's behaviour on disconnect) unless `disarm_on_close` is false; close
        the link; stop the sim rig. A shared robot closes when its last user does."""
        if getattr(self, "_users", 0) > 1:
            self._users -= 1
            return
        if SerialRobot._open.get(self.port) is self:
            del SerialRobot._open[self.port]
        link = getattr(self, "link", None)
        if link is not None and link.is_open:
            try:
                if self.disarm_on_close:
                    self.firmware.disarm()
            except (LinkError, FirmwareError):
                pass
            link.close()
        if getattr(self, "rig", None) is not None:
            self.rig.close()
            self.rig = None
        if getattr(self, "cameras", None) is not None:
            self.cameras.close()

    def tcp_quat(self) -> np.ndarray | None:
        """The measured TCP orientation (w, x, y, z), base frame."""
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, np.ascontiguousarray(self.kinematics.fk(self._measured_q()[:-1])[1]).reshape(9))
        return quat

    # ------------------------------------------------------------------ cameras and the sim rig's tracker
    def frame_age_s(self) -> float:
        return max(self._frame_ages) if self._frame_ages else float("nan")

    def _render(self, camera: str, height: int | None = None, width: int | None = None) -> np.ndarray:
        """The newest frame of `camera` (RGB uint8[H, W, 3]); StaleFrameError when it is older than
        `max_frame_age`. With the sim rig the plant renders it, as a camera on the bench would capture it."""
        size = (height or self.render_size[0], width or self.render_size[1])
        if self.rig is not None:
            t0 = time.monotonic()
            image = self.rig.render(camera, *size)
            self._frame_ages.append(time.monotonic() - t0)
            return image
        if camera not in self.cameras.names:
            raise ValueError(
                f"robot has no camera {camera!r} (it has {list(self.cameras.names)}): add it to robot.cameras"
            )
        image, age = self.cameras[camera].latest(self.max_frame_age)
        if image.shape[:2] != size:
            raise ValueError(
                f"camera {camera!r} captures {image.shape[0]}x{image.shape[1]}, the task wants {size[0]}x{size[1]}: "
                f"set robot.render_size=[{size[0]},{size[1]}]"
            )
        self._frame_ages.append(age)
        return image

    def __getattr__(self, name: str):
        # Capabilities the tasks test for with hasattr: cameras (`render`, `camera_names`) exist with
        # robot.cameras or the sim rig; object poses only with the sim rig (a tracking system stand-in).
        state = self.__dict__
        rig = state.get("rig")
        if name in ("render", "camera_names") and (rig is not None or state.get("cameras") is not None):
            if name == "render":
                return self._render
            return rig.camera_names() if rig is not None else tuple(state["cameras"].names)
        if name in ("object_pos", "object_quat", "set_object_pose") and rig is not None:
            return getattr(rig, name)
        raise AttributeError(f"{type(self).__name__} has no {name}")
