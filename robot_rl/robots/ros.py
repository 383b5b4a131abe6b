"""RosRobot: a Robot that is a client of a robot bridge's topics (robot_rl/ros/contract.py), so that
RobotEnv runs unchanged over ROS 2, against the sim bridge or a hardware bridge alike.

The bridge publishes one observation per control period: joint states, TCP pose and twist, tracked
object poses and camera frames, all with the same header stamp. RosRobot assembles a complete set
per stamp (a frame; robot_rl/ros/frames.py) and acts only on the newest one:
  - `apply_action` refuses to command from a frame older than `max_obs_age` or older than one control
    period by the time the command would leave (`StaleObservationError`): a late command is never sent;
  - each command carries the stamp of the frame it answers, so the bridge can reject late ones too;
  - a lock-stepped sim bridge does not move between commands, so its newest frame never goes stale;
  - after sending it waits for the next frame (free-running bridge: the next control tick;
    lock-stepped: the step the command triggered).
rclpy is imported lazily; the node spins in its own context and thread (robot_rl.ros.node).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from robot_rl.robots.arms import get_arm
from robot_rl.robots.base import Robot, RobotState, RobotUnavailable
from robot_rl.ros import contract
from robot_rl.ros.frames import StampedSets, image_to_array, stamp_seconds, to_stamp

SETTLED_SPEED = 0.01  # m/s: reset(tcp_pos) waits for the TCP to come to rest below this


class StaleObservationError(RobotUnavailable):
    """No observation fresh enough to act on."""


@dataclass
class Frame:
    """One complete observation from the bridge."""

    stamp: float  # seconds (the bridge's clock when it published)
    state: RobotState
    objects: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # name -> (pos, quat wxyz)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    tcp_quat: np.ndarray | None = None  # TCP orientation (w, x, y, z), base frame


class RosRobot(Robot):
    """A Robot over the bridge in `namespace` (see the module docstring)."""

    def __init__(
        self,
        namespace: str = contract.DEFAULT_ROBOT_NAMESPACE,
        max_obs_age: float = 0.25,
        timeout: float = 5.0,
        reset_speed: float = 0.2,
        reset_timeout: float = 3.0,
        reset_tol: float = 0.005,
        node_name: str = "robot_rl_ros_robot",
    ) -> None:
        """`max_obs_age`: s, the oldest frame `apply_action` acts on (it also never acts on one older than
        the control period); `timeout`: s to wait for the bridge; `reset_speed` (m/s), `reset_timeout` (s) and
        `reset_tol` (m): how `reset(tcp_pos)` servos from the bridge's reset pose to `tcp_pos` and settles."""
        from std_msgs.msg import String

        from robot_rl.ros.node import BackgroundNode

        self.namespace = namespace
        self.max_obs_age = float(max_obs_age)
        self.timeout = float(timeout)
        self.reset_speed = float(reset_speed)
        self.reset_timeout = float(reset_timeout)
        self.reset_tol = float(reset_tol)
        self._lock = threading.Condition()
        self._frame: Frame | None = None
        self._status: dict | None = None
        self._ros = BackgroundNode(node_name)
        self.node = self._ros.node
        self.node.create_subscription(
            String, self._name(contract.ROBOT_STATUS.name), self._on_status, contract.qos("latched")
        )
        try:
            status = self._wait(
                lambda: self._status,
                self.timeout,
                f"no robot bridge at {namespace} (no {self._name('status')} within {self.timeout:.0f} s): "
                "start robot_bridge, or set robot.namespace to its namespace",
            )
            self.control_dt = float(status["control_dt"])
            self.workspace = (np.asarray(status["workspace"][0], float), np.asarray(status["workspace"][1], float))
            self.gripper_max_opening = float(status["gripper_max_opening"])
            # a bridge whose task acts in rotation executes the twist's angular part (within its limit)
            self.supports_rotation = bool(status.get("rotation", False))
            self.joint_names = list(status["joint_names"])
            self.camera_names = tuple(status["cameras"])
            self.object_names = tuple(status["objects"])
            self.arm = get_arm(status["arm"]) if status.get("arm") else None  # tasks take per-arm defaults
            # sensor topics as reliable as the bridge publishes them (a lock-stepped one: every frame counts);
            # a lock-stepped bridge publishes its first frame on reset()
            self._subscribe(bool(status.get("reliable_sensors")))
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ plumbing
    def _name(self, relative: str) -> str:
        return contract.join(self.namespace, relative)

    def _wait(self, ready, timeout: float, error: str):
        deadline = time.monotonic() + timeout
        with self._lock:
            while (value := ready()) is None or value is False:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RobotUnavailable(error)
                self._lock.wait(left)
            return value

    def _subscribe(self, reliable_sensors: bool) -> None:
        from geometry_msgs.msg import PoseStamped, TwistStamped
        from sensor_msgs.msg import Image, JointState
        from std_srvs.srv import Trigger

        sensor = contract.qos("sensor", reliable_sensors)
        parts = [contract.JOINT_STATES.name, contract.TCP_POSE.name, contract.TCP_TWIST.name]
        subs = [
            (JointState, contract.JOINT_STATES.name),
            (PoseStamped, contract.TCP_POSE.name),
            (TwistStamped, contract.TCP_TWIST.name),
        ]
        for obj in self.object_names:
            name = contract.OBJECT_POSE.name.format(object=obj)
            subs.append((PoseStamped, name))
            parts.append(name)
        for camera in self.camera_names:
            name = contract.IMAGE.name.format(camera=camera)
            subs.append((Image, name))
            parts.append(name)
        self._sets = StampedSets(parts)
        for msg_type, name in subs:
            self.node.create_subscription(
                msg_type, self._name(name), lambda msg, part=name: self._on_part(part, msg), sensor
            )
        command = contract.qos("command")
        self._twist_pub = self.node.create_publisher(TwistStamped, self._name(contract.CMD_TWIST.name), command)
        self._gripper_pub = self.node.create_publisher(JointState, self._name(contract.CMD_GRIPPER.name), command)
        self._reset_client = self.node.create_client(Trigger, self._name(contract.RESET.name))

    def _on_status(self, msg) -> None:
        with self._lock:
            self._status = json.loads(msg.data)
            self._lock.notify_all()

    def _on_part(self, part: str, msg) -> None:
        stamp = stamp_seconds(msg.header.stamp)
        with self._lock:
            parts = self._sets.add(part, stamp, msg)  # None until the set of this stamp is complete
            if parts is None:
                return
            self._frame = self._assemble(stamp, parts)
            self._lock.notify_all()

    def _assemble(self, stamp: float, parts: dict[str, object]) -> Frame:
        joints = parts[contract.JOINT_STATES.name]
        index = {name: i for i, name in enumerate(joints.name)}
        arm = [index[name] for name in self.joint_names]
        grip = index[contract.GRIPPER_JOINT]
        position, velocity = np.asarray(joints.position), np.asarray(joints.velocity)
        p = parts[contract.TCP_POSE.name].pose.position
        q = parts[contract.TCP_POSE.name].pose.orientation
        v = parts[contract.TCP_TWIST.name].twist.linear
        state = RobotState(
            tcp_pos=np.array([p.x, p.y, p.z]),
            tcp_vel=np.array([v.x, v.y, v.z]),
            gripper_opening=float(position[grip]),
            joint_pos=position[arm].copy(),
            joint_vel=velocity[arm].copy() if len(velocity) else np.zeros(len(arm)),
        )
        objects = {}
        for obj in self.object_names:
            pose = parts[contract.OBJECT_POSE.name.format(object=obj)].pose
            objects[obj] = (
                np.array([pose.position.x, pose.position.y, pose.position.z]),
                np.array([pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z]),
            )
        images = {
            camera: image_to_array(parts[contract.IMAGE.name.format(camera=camera)]) for camera in self.camera_names
        }
        return Frame(stamp, state, objects, images, np.array([q.w, q.x, q.y, q.z]))

    def _fresh_frame(self, limit: float, command: bool = False) -> Frame:
        """The newest frame if it is at most `limit` s old (and, for a `command`, the robot is armed)."""
        with self._lock:
            frame, status = self._frame, self._status or {}
        if frame is None:
            raise StaleObservationError(
                f"no complete observation from {self.namespace} yet (joint_states, tcp_pose, "
                "tcp_twist, objects, images): reset() first, and check the bridge's log"
            )
        if not command:
            pass
        elif status.get("estop"):
            raise RobotUnavailable(
                f"robot bridge {self.namespace} is e-stopped: clear it with {self._name('estop')} false, then arm it"
            )
        elif not status.get("armed"):
            raise RobotUnavailable(f"robot bridge {self.namespace} is disarmed: arm it with {self._name('arm')} true")
        age = time.time() - frame.stamp
        if age > limit and status.get("mode") != "lockstep":  # a lock-stepped sim waits for us: never stale
            raise StaleObservationError(
                f"newest observation from {self.namespace} is {age * 1e3:.0f} ms old "
                f"(limit {limit * 1e3:.0f} ms): not acting on it; check the bridge is running"
            )
        return frame

    def _next_frame(self, after: float, what: str) -> Frame:
        return self._wait(
            lambda: self._frame if self._frame is not None and self._frame.stamp > after else None,
            max(self.timeout, 4 * self.control_dt),
            f"no observation from {self.namespace} after {what} within {self.timeout:.1f} s: "
            "is the bridge running (and armed)?",
        )

    # ------------------------------------------------------------------ Robot API
    def apply_action(self, tcp_delta: np.ndarray, gripper: float, rot_delta: np.ndarray | None = None) -> RobotState:
        """Command one control period from the newest frame and return the next frame's state. The
        translation is sent as the twist's linear velocity, `rot_delta` (base-frame rotation vector, rad)
        as its angular velocity (rad/s; zero when None)."""
        from geometry_msgs.msg import TwistStamped
        from sensor_msgs.msg import JointState

        frame = self._fresh_frame(min(self.max_obs_age, self.control_dt), command=True)
        twist = TwistStamped()
        twist.header.stamp = to_stamp(frame.stamp)
        twist.header.frame_id = contract.BASE_FRAME
        velocity = np.asarray(tcp_delta, dtype=np.float64) / self.control_dt
        twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z = (float(x) for x in velocity)
        if rot_delta is not None:
            angular = np.asarray(rot_delta, dtype=np.float64) / self.control_dt
            twist.twist.angular.x, twist.twist.angular.y, twist.twist.angular.z = (float(x) for x in angular)
        grip = JointState()
        grip.header = twist.header
        grip.name = [contract.GRIPPER_JOINT]
        grip.position = [float(self.gripper_max_opening * (1.0 - np.clip(gripper, -1.0, 1.0)) / 2.0)]
        late = time.time() - frame.stamp > self.control_dt
        if late and self._status.get("mode") != "lockstep":  # inference took too long: never send a late command
            raise StaleObservationError(
                f"command from {self.namespace}'s observation would leave "
                f"{(time.time() - frame.stamp) * 1e3:.0f} ms after it, more than one "
                f"control period ({self.control_dt * 1e3:.0f} ms): not sent"
            )
        self._gripper_pub.publish(grip)
        self._twist_pub.publish(twist)
        return self._next_frame(frame.stamp, "a command").state

    def read_state(self) -> RobotState:
        return self._fresh_frame(self.max_obs_age).state

    def reset(self, tcp_pos: np.ndarray | None = None) -> RobotState:
        """The bridge's reset (its reset pose, gripper open; a sim bridge also places the objects), then,
        given `tcp_pos`, servo there at up to `reset_speed` and let the arm settle (`reset_timeout` at most)."""
        from std_srvs.srv import Trigger

        if not self._reset_client.wait_for_service(timeout_sec=self.timeout):
            raise RobotUnavailable(f"no reset service {self._name('reset')}: start robot_bridge")
        with self._lock:
            before = self._frame.stamp if self._frame is not None else 0.0
        done = threading.Event()
        future = self._reset_client.call_async(Trigger.Request())
        future.add_done_callback(lambda _: done.set())
        if not done.wait(self.timeout + 30.0):  # a hardware reset moves the arm: allow it time
            raise RobotUnavailable(f"reset service {self._name('reset')} did not answer")
        response = future.result()
        if not response.success:
            raise RobotUnavailable(f"robot bridge {self.namespace} refused the reset: {response.message}")
        state = self._next_frame(before, "the reset").state
        if tcp_pos is None:
            return state
        target = np.clip(np.asarray(tcp_pos, float), *self.workspace)
        max_step = self.reset_speed * self.control_dt
        for _ in range(int(np.ceil(self.reset_timeout / self.control_dt))):  # move there, then come to rest
            error = target - state.tcp_pos
            distance = float(np.linalg.norm(error))
            if distance <= self.reset_tol and np.linalg.norm(state.tcp_vel) <= SETTLED_SPEED:
                break
            step = error * min(1.0, max_step / distance) if distance > self.reset_tol else np.zeros(3)
            state = self.apply_action(step, -1.0)
        return state

    def tcp_quat(self) -> np.ndarray | None:
        """The newest frame's TCP orientation (w, x, y, z), base frame."""
        quat = self._fresh_frame(self.max_obs_age).tcp_quat
        return None if quat is None else quat.copy()

    def stop(self) -> None:
        """Send nothing: the bridge holds the robot when commands stop."""

    def close(self) -> None:
        self._ros.close()

    # ------------------------------------------------------------------ what the tasks read
    def object_pos(self, name: str) -> np.ndarray:
        return self._object(name)[0].copy()

    def object_quat(self, name: str) -> np.ndarray:
        return self._object(name)[1].copy()

    def _object(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        objects = self._fresh_frame(self.max_obs_age).objects
        if name not in objects:
            raise ValueError(
                f"robot bridge {self.namespace} tracks no object {name!r} (it tracks "
                f"{list(objects)}): add it to the bridge's objects parameter"
            )
        return objects[name]

    def render(self, camera: str, height: int | None = None, width: int | None = None) -> np.ndarray:
        """The newest frame's image from `camera` (the bridge renders at its task's image_size)."""
        images = self._fresh_frame(self.max_obs_age).images
        if camera not in images:
            raise ValueError(
                f"robot bridge {self.namespace} publishes no camera {camera!r} (it has "
                f"{list(images)}): add it to the bridge's cameras parameter"
            )
        image = images[camera]
        if (height or image.shape[0], width or image.shape[1]) != image.shape[:2]:
            raise ValueError(
                f"camera {camera!r} publishes {image.shape[0]}x{image.shape[1]}, the task wants "
                f"{height}x{width}: give the bridge the same task config (it renders at task.image_size)"
            )
        return image
