"""robot_bridge: any robot_rl Robot on the ROS 2 contract (robot_rl/ros/contract.py).

Publishes one observation per control period (joint states, TCP pose/twist, wrench, tracked object
poses, camera frames; one header stamp for all) and executes end-effector + gripper commands.

Modes (`mode` parameter):
  - free: a timer runs the robot at its control rate, like hardware; each tick executes the command
    that answers the newest observation (its header stamp equals that observation's) and holds when
    none arrived in time; commands answering older observations are rejected as stale.
  - lockstep: the robot steps once per command pair (twist + gripper answering the newest
    observation), as fast as the actor sends them (fast training in sim).
Services: reset (reset pose, gripper open; sim: objects placed at random), arm, estop (latched),
stats. The bridge starts disarmed unless `start_armed`; disarmed or e-stopped it holds the robot.

Commands are untrusted (anyone on the DDS domain can publish) and validated before they can reach the
robot; an invalid one is dropped as if it never came (free: the tick holds; lockstep: no step),
counted by kind in the `stats` service (`invalid`) and logged at once, then at most every 10 s per
kind with the count. Twist: every component finite; the linear speed at most `max_tcp_speed`;
angular zero when the task does not act in rotation (the TCP orientation is fixed: a command asking
for a rotation is refused, not half executed; kind `twist_angular`), else the angular speed at most
`max_tcp_angular_speed` (kind `twist_angular_overspeed`); frame_id empty or the base frame; a
normalised stamp (nanosec < 1e9, sec >= 0).
Gripper: `name` and `position` of one length, the gripper joint named exactly once, its opening
finite and within [0, gripper_max_opening] (+1 mm). No exception in a callback stops the node: it is
counted as `internal` and logged the same way.

Parameters: overrides (hydra, e.g. ['task=pick_cube_vision', 'robot.control_dt=0.02']), mode,
cameras and objects (default: what the task observes; frames at the task's image_size), start_armed,
reliable_sensors (default: true in lockstep), seed, max_tcp_speed (m/s; 0 = the task's top speed,
sqrt(3) * action_scale / control_dt, times 1.25: a full-scale action on every axis passes, anything
faster is not a policy's command), max_tcp_angular_speed (rad/s, for a task with `rotation`; 0 = the
task's top angular speed, sqrt(3) * rotation_scale / control_dt, times 1.25).
"""

from __future__ import annotations

import functools
import json
import math
import time

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header, String
from std_srvs.srv import SetBool, Trigger

from robot_rl.ros import contract
from robot_rl.ros.frames import to_stamp
from robot_rl.runtime.wire import RejectCounter
from robot_rl_ros.common import node_config, run_node, string_list

SPEED_MARGIN = 1.25  # default max_tcp_speed: the task's top speed times this
GRIPPER_TOLERANCE = 1e-3  # m past [0, gripper_max_opening] still accepted (and clipped)
MAX_JOINT_NAMES = 64


def guarded(kind: str):
    """A callback wrapper: an exception is counted (`internal`) and logged instead of stopping the node;
    a service callback answers success=False with the reason."""

    def wrap(method):
        @functools.wraps(method)
        def call(self, *args):
            try:
                return method(self, *args)
            except Exception as err:
                reason = " ".join(str(err).split())[:200]
                self.invalid.add("internal", f"{kind} failed ({type(err).__name__}: {reason})")
                if len(args) == 2 and hasattr(args[1], "success"):  # (request, response) of a service
                    args[1].success, args[1].message = False, f"internal error: {type(err).__name__}: {err}"[:500]
                    return args[1]
                return None

        return call

    return wrap


class Percentiles:
    """Samples kept for the stats service (bounded)."""

    def __init__(self, limit: int = 100_000) -> None:
        self.values: list[float] = []
        self.limit = limit

    def add(self, value: float) -> None:
        if len(self.values) < self.limit:
            self.values.append(value)

    def summary(self, scale: float = 1e3) -> dict:
        if not self.values:
            return {"n": 0}
        v = np.asarray(self.values) * scale
        return {
            "n": len(v),
            "p50": float(np.percentile(v, 50)),
            "p99": float(np.percentile(v, 99)),
            "max": float(v.max()),
            "mean": float(v.mean()),
        }


class RobotBridge(Node):
    def __init__(self) -> None:
        super().__init__("robot_bridge")
        from omegaconf import OmegaConf

        from robot_rl.robots import make_robot
        from robot_rl.tasks import make_task

        cfg = node_config(self)
        self.mode = self.declare_parameter("mode", "free").value
        if self.mode not in ("free", "lockstep"):
            raise ValueError(
                f"robot_bridge mode={self.mode!r}: use free (real time) or lockstep (one step per command)"
            )
        cameras, objects = string_list(self, "cameras"), string_list(self, "objects")
        self.armed = bool(self.declare_parameter("start_armed", False).value)
        self.reliable = bool(self.declare_parameter("reliable_sensors", self.mode == "lockstep").value)
        self.rng = np.random.default_rng(int(self.declare_parameter("seed", 0).value))
        max_tcp_speed = float(self.declare_parameter("max_tcp_speed", 0.0).value)
        max_tcp_angular_speed = float(self.declare_parameter("max_tcp_angular_speed", 0.0).value)
        self.estop = False
        self.invalid = RejectCounter(lambda msg: self.get_logger().warning(msg))

        robot_cfg = OmegaConf.to_container(cfg.robot, resolve=True)
        robot_name = robot_cfg.pop("name", "mujoco")
        if robot_name == "ros":
            raise ValueError(
                "robot_bridge cannot wrap robot=ros (a client of a bridge, not a robot): use robot=mujoco or serial"
            )
        self.robot = make_robot(robot_name, **robot_cfg)
        task_cfg = OmegaConf.to_container(cfg.task, resolve=True)
        self.task = make_task(task_cfg.pop("name"), **task_cfg)
        if hasattr(self.task, "bind"):
            self.task.bind(self.robot)  # per-arm task defaults (cube area, start TCP) from the robot's arm model
        self.reset_tcp = np.asarray(getattr(self.task, "start_tcp", self.robot.home_tcp_pos), float)
        # by default what the task observes: its cameras at its image size, its object
        self.cameras = cameras or list(getattr(self.task, "cameras", []))
        self.objects = objects or ([self.task.cube_name] if hasattr(self.task, "cube_name") else [])
        self.image_size = tuple(getattr(self.task, "image_size", self.robot.render_size))
        missing = [c for c in self.cameras if c not in self.robot.camera_names]
        if missing:
            raise ValueError(
                f"robot_bridge cameras {missing} are not in the robot; choose from {list(self.robot.camera_names)}"
            )
        self.dt = float(self.robot.control_dt)
        if not math.isfinite(max_tcp_speed) or max_tcp_speed < 0:
            raise ValueError(f"robot_bridge max_tcp_speed={max_tcp_speed}: give a speed in m/s (0: the task's)")
        scale = float(getattr(self.task, "action_scale", 0.0))
        self.max_tcp_speed = max_tcp_speed or (SPEED_MARGIN * math.sqrt(3) * scale / self.dt if scale > 0 else 0.5)
        if not math.isfinite(max_tcp_angular_speed) or max_tcp_angular_speed < 0:
            raise ValueError(
                f"robot_bridge max_tcp_angular_speed={max_tcp_angular_speed}: give a speed in rad/s (0: the task's)"
            )
        self.rotation = bool(getattr(self.task, "rotation", False))
        if self.rotation:
            if not getattr(self.robot, "supports_rotation", False):
                raise ValueError(
                    f"robot_bridge: the task acts in rotation but {type(self.robot).__name__} does not: "
                    "set task.rotation=false"
                )
            self.robot.orientation_limits = np.asarray(self.task.rotation_limits, dtype=np.float64).copy()
        rot_scale = float(getattr(self.task, "rotation_scale", 0.0))
        self.max_tcp_angular_speed = max_tcp_angular_speed or SPEED_MARGIN * math.sqrt(3) * rot_scale / self.dt
        arm = getattr(self.robot, "arm", None)
        n_joints = len(self.robot.read_state().joint_pos)
        self.joint_names = list(arm.arm_joints) if arm is not None else [f"joint{i + 1}" for i in range(n_joints)]
        kin = getattr(self.robot, "kin", None) or getattr(self.robot, "kinematics", None)  # sim | serial
        ranges = getattr(kin, "joint_range", None)
        self.joint_limits = (
            [[float(lo), float(hi)] for lo, hi in zip(*ranges)]
            if ranges is not None and len(ranges[0]) == n_joints
            else None
        )
        self.gripper = -1.0
        self.stamp = 0.0  # stamp of the newest published observation
        self.pending: dict[str, object] = {}  # lockstep: the twist and the gripper command for self.stamp
        self.tick_times = Percentiles()  # s between control ticks (free mode)
        self.jitter = Percentiles()  # |tick period - control_dt|, s
        self.latency = Percentiles()
        self.applied = self.rejected_stale = self.held = 0
        self.last_tick: float | None = None

        name = lambda endpoint, **kw: endpoint.name.format(**kw)  # noqa: E731
        sensor = contract.qos("sensor", self.reliable)
        self.pub_joints = self.create_publisher(JointState, contract.JOINT_STATES.name, sensor)
        self.pub_pose = self.create_publisher(PoseStamped, contract.TCP_POSE.name, sensor)
        self.pub_twist = self.create_publisher(TwistStamped, contract.TCP_TWIST.name, sensor)
        self.pub_wrench = self.create_publisher(WrenchStamped, contract.WRENCH.name, sensor)
        self.pub_objects = {
            o: self.create_publisher(PoseStamped, name(contract.OBJECT_POSE, object=o), sensor) for o in self.objects
        }
        self.pub_images = {
            c: self.create_publisher(Image, name(contract.IMAGE, camera=c), sensor) for c in self.cameras
        }
        self.pub_status = self.create_publisher(String, contract.ROBOT_STATUS.name, contract.qos("latched"))
        command = contract.qos("command")
        self.create_subscription(TwistStamped, contract.CMD_TWIST.name, self.on_twist, command)
        self.create_subscription(JointState, contract.CMD_GRIPPER.name, self.on_gripper, command)
        self.create_service(Trigger, contract.RESET.name, self.on_reset)
        self.create_service(SetBool, contract.ARM.name, self.on_arm)
        self.create_service(SetBool, contract.ESTOP.name, self.on_estop)
        self.create_service(Trigger, contract.BRIDGE_STATS.name, self.on_stats)

        self.robot.reset(self.reset_tcp)
        self.task.place_scene(self.robot, self.rng)
        self.publish_status()
        self.publish_observation()
        if self.mode == "free":
            self.create_timer(self.dt, self.tick)
        self.get_logger().info(
            f"{type(self.robot).__name__} at {1 / self.dt:.0f} Hz, {self.mode}, cameras "
            f"{self.cameras}, objects {self.objects}, {'armed' if self.armed else 'disarmed'}"
        )

    # ------------------------------------------------------------------ publishing
    def publish_status(self) -> None:
        lo, hi = self.robot.workspace
        status = {
            "armed": self.armed,
            "estop": self.estop,
            "mode": self.mode,
            "reliable_sensors": self.reliable,
            "control_dt": self.dt,
            "workspace": [lo.tolist(), hi.tolist()],
            "gripper_max_opening": self.robot.gripper_max_opening,
            "joint_names": self.joint_names,
            "joint_limits": self.joint_limits,  # [[low, high], ...] rad per joint; null when the robot has no model
            "rotation": self.rotation,
            "cameras": self.cameras,
            "objects": self.objects,
            "arm": getattr(getattr(self.robot, "arm", None), "name", None),  # the actor's task binds to it
        }
        self.pub_status.publish(String(data=json.dumps(status)))

    def publish_observation(self) -> None:
        """One observation, every part with the same stamp (now)."""
        state = self.robot.read_state()
        self.stamp = max(time.time(), self.stamp + 1e-6)  # strictly increasing, even within a clock tick
        stamp = to_stamp(self.stamp)
        self.stamp = stamp.sec + stamp.nanosec * 1e-9  # exactly what subscribers read back

        joints = JointState()
        joints.header.stamp = stamp
        joints.name = [*self.joint_names, contract.GRIPPER_JOINT]
        joints.position = [*map(float, state.joint_pos), float(state.gripper_opening)]
        joints.velocity = [*map(float, state.joint_vel), 0.0]
        self.pub_joints.publish(joints)

        header = Header(stamp=stamp, frame_id=contract.BASE_FRAME)
        self.pub_pose.publish(pose_msg(header, state.tcp_pos, self.robot.tcp_quat()))
        twist = TwistStamped(header=header)
        set_xyz(twist.twist.linear, state.tcp_vel)
        self.pub_twist.publish(twist)
        wrench = self.robot.wrench()
        if wrench is not None:
            msg = WrenchStamped(header=header)
            set_xyz(msg.wrench.force, wrench[:3])
            set_xyz(msg.wrench.torque, wrench[3:])
            self.pub_wrench.publish(msg)
        for obj, pub in self.pub_objects.items():
            pub.publish(pose_msg(header, self.robot.object_pos(obj), self.robot.object_quat(obj)))

        for camera, pub in self.pub_images.items():
            frame = self.robot.render(camera, *self.image_size)
            image = Image()
            image.header.stamp, image.header.frame_id = stamp, camera
            image.height, image.width = frame.shape[:2]
            image.encoding, image.step = "rgb8", frame.shape[1] * 3
            image.data = frame.tobytes()
            pub.publish(image)

    # ------------------------------------------------------------------ commands
    def commandable(self) -> bool:
        return self.armed and not self.estop

    @guarded("a twist command")
    def on_twist(self, msg) -> None:
        reason = self.check_stamp(msg) or self.check_twist(msg)
        if reason:
            self.reject(*reason)
            return
        self.on_command("twist", msg)

    @guarded("a gripper command")
    def on_gripper(self, msg) -> None:
        reason = self.check_stamp(msg) or self.check_gripper(msg)
        if reason:
            self.reject(*reason)
            return
        self.on_command("gripper", msg)

    def reject(self, kind: str, why: str) -> None:
        self.invalid.add(kind, f"dropped a command ({kind}): {why}")

    @staticmethod
    def check_stamp(msg) -> tuple[str, str] | None:
        stamp = msg.header.stamp
        if stamp.sec < 0 or stamp.nanosec >= 1_000_000_000:
            return "stamp_invalid", f"header stamp {stamp.sec} s {stamp.nanosec} ns is not a normalised time"
        return None

    def check_twist(self, msg) -> tuple[str, str] | None:
        """Why a twist command may not run (kind, reason), or None."""
        linear = [msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z]
        angular = [msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z]
        if not all(math.isfinite(v) for v in linear + angular):
            return "twist_nonfinite", f"linear {linear} angular {angular} are not all finite"
        speed = math.sqrt(sum(v * v for v in linear))
        if speed > self.max_tcp_speed:
            return "twist_overspeed", f"linear speed {speed:.3g} m/s exceeds max_tcp_speed {self.max_tcp_speed:.3g} m/s"
        if any(angular) and not self.rotation:
            return "twist_angular", f"angular {angular}: the TCP orientation is fixed, rotations are not executed"
        angular_speed = math.sqrt(sum(v * v for v in angular))
        if angular_speed > self.max_tcp_angular_speed:
            return "twist_angular_overspeed", (
                f"angular speed {angular_speed:.3g} rad/s exceeds max_tcp_angular_speed "
                f"{self.max_tcp_angular_speed:.3g} rad/s"
            )
        if msg.header.frame_id not in ("", contract.BASE_FRAME):
            return "twist_frame", f"frame_id {msg.header.frame_id[:40]!r}: commands are in {contract.BASE_FRAME!r}"
        return None

    def check_gripper(self, msg) -> tuple[str, str] | None:
        """Why a gripper command may not run (kind, reason), or None."""
        names, positions = list(msg.name), list(msg.position)
        if len(names) != len(positions) or len(names) > MAX_JOINT_NAMES:
            return "gripper_malformed", f"{len(names)} names and {len(positions)} positions"
        count = names.count(contract.GRIPPER_JOINT)
        if count == 0:
            return "gripper_no_joint", f"no {contract.GRIPPER_JOINT!r} joint among {names[:8]}"
        if count > 1:
            return "gripper_malformed", f"the {contract.GRIPPER_JOINT!r} joint is named {count} times"
        opening = positions[names.index(contract.GRIPPER_JOINT)]
        if not math.isfinite(opening):
            return "gripper_nonfinite", f"opening {opening}"
        top = self.robot.gripper_max_opening
        if not -GRIPPER_TOLERANCE <= opening <= top + GRIPPER_TOLERANCE:
            return "gripper_range", f"opening {opening:.4g} m is outside [0, {top:.4g}] m"
        return None

    def on_command(self, kind: str, msg) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if stamp != self.stamp:  # answers an older observation: too late to execute
            self.rejected_stale += 1
            return
        if kind == "twist":
            self.latency.add(time.time() - stamp)  # observation published -> its command here
        self.pending[kind] = msg
        if self.mode == "lockstep" and len(self.pending) == 2:
            self.step()

    def step(self) -> None:
        """Execute the pending command (or hold) for one control period, then publish."""
        twist, grip = self.pending.get("twist"), self.pending.get("gripper")
        self.pending = {}
        if twist is not None and grip is not None and self.commandable():
            v = twist.twist.linear
            delta = np.array([v.x, v.y, v.z]) * self.dt
            w = twist.twist.angular
            rot_delta = np.array([w.x, w.y, w.z]) * self.dt if self.rotation else None
            opening = grip.position[list(grip.name).index(contract.GRIPPER_JOINT)]
            self.gripper = float(np.clip(1.0 - 2.0 * opening / self.robot.gripper_max_opening, -1.0, 1.0))
            self.applied += 1
        else:
            delta, rot_delta = np.zeros(3), None
            self.held += 1
        if self.commandable() or self.mode == "free":  # hardware keeps its physics running when held
            if rot_delta is None:
                self.robot.apply_action(delta, self.gripper)
            else:
                self.robot.apply_action(delta, self.gripper, rot_delta)
        self.publish_observation()

    @guarded("a control tick")
    def tick(self) -> None:
        now = time.perf_counter()
        if self.last_tick is not None:
            self.tick_times.add(now - self.last_tick)
            self.jitter.add(abs(now - self.last_tick - self.dt))
        self.last_tick = now
        self.step()

    # ------------------------------------------------------------------ services
    @guarded("the reset service")
    def on_reset(self, request, response):
        if self.estop:
            response.success, response.message = False, "e-stopped: clear it with the estop service (false) first"
            return response
        self.robot.reset(self.reset_tcp)
        self.gripper = -1.0
        self.task.place_scene(self.robot, self.rng)
        self.pending = {}
        self.publish_observation()
        response.success, response.message = True, f"reset to TCP {np.round(self.reset_tcp, 3).tolist()}"
        return response

    @guarded("the arm service")
    def on_arm(self, request, response):
        if request.data and self.estop:
            response.success, response.message = False, "e-stopped: clear it with the estop service (false) first"
            return response
        self.armed = bool(request.data)
        self.robot.stop()
        self.publish_status()
        response.success, response.message = True, "armed" if self.armed else "disarmed"
        return response

    @guarded("the estop service")
    def on_estop(self, request, response):
        if request.data:
            self.estop, self.armed = True, False
            self.robot.stop()
            message = "e-stop engaged: holding; clear with estop false, then arm"
        else:
            self.estop = False
            message = "e-stop cleared; still disarmed: arm to move"
        self.publish_status()
        if self.mode == "lockstep":
            self.publish_observation()  # a waiting actor sees the new state at once
        response.success, response.message = True, message
        return response

    @guarded("the stats service")
    def on_stats(self, request, response):
        response.success = True
        response.message = json.dumps(
            {
                "mode": self.mode,
                "control_dt_ms": self.dt * 1e3,
                "period_ms": self.tick_times.summary(),
                "jitter_ms": self.jitter.summary(),
                "obs_to_command_ms": self.latency.summary(),
                "applied": self.applied,
                "held": self.held,
                "rejected_stale": self.rejected_stale,
                "invalid": self.invalid.counts(),
                "max_tcp_speed": self.max_tcp_speed,
                "max_tcp_angular_speed": self.max_tcp_angular_speed,
            }
        )
        return response

    def shutdown(self) -> None:
        self.robot.stop()
        self.robot.close()


def set_xyz(vector, values) -> None:
    """Fill a geometry_msgs Vector3 / Point from 3 numbers."""
    vector.x, vector.y, vector.z = (float(v) for v in values)


def pose_msg(header, position, quat) -> PoseStamped:
    """A PoseStamped at `position` with orientation `quat` (w, x, y, z; identity when None)."""
    msg = PoseStamped(header=header)
    set_xyz(msg.pose.position, position)
    w, x, y, z = (1.0, 0.0, 0.0, 0.0) if quat is None else (float(q) for q in quat)
    msg.pose.orientation.w, msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z = w, x, y, z
    return msg


def main(args: list[str] | None = None) -> None:
    run_node(RobotBridge, args)


if __name__ == "__main__":
    main()
