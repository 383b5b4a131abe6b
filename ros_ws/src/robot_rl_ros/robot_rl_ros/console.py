"""console: the web console (robot_rl/console) for robots and a training run on ROS 2.

Serves the page (robot_rl.console.server.ConsoleServer, its own thread) beside this node, which turns
topics into the console's hubs and the page's commands into topics and service calls:

- robots: every namespace with a bridge (a `<ns>/status` std_msgs/String beside a `<ns>/joint_states`
  sensor_msgs/JointState; looked for every second), or the `robot_namespaces` given. One hub per robot,
  named after its namespace. Its state comes from the bridge (`status`: armed, e-stop, cameras, joint
  names and limits; `tcp_pose`; `joint_states` with the gripper; `image/<camera>` rgb8 frames, at most
  30 per second; `success_probability` from a reward classifier) and from the robot's actor (below).
- the page's arm and e-stop call the bridge's `arm` and `estop` services (asynchronously: the web
  server never waits for DDS). A refusal or a bridge that does not answer shows on the page, and the
  hub's flags return to the bridge's (its `status` is the truth). An e-stop that does not reach the
  bridge is repeated every second while the console's e-stop is latched.
- the page's driving, labels and reset go to the actor as teleop commands: `rate_hz` times a second per
  robot, a sensor_msgs/Joy on `<ns>/teleop/command` (axes = the action x, y, z, gripper; buttons =
  [active, code]: a label 1 success, 2 failure, 3 discard, or 4 end the episode now; one code per
  message, each sent once; header.frame_id = this node). The actor must run with `teleop=ros`
  (robot_rl.teleop.ros.RosTeleopDevice); a teleop node's device may publish on the same topic (the
  device takes whichever sender is active). The page's **reset ends the actor's episode** (code 4:
  truncated, unlabelled); the actor then resets the robot itself through the bridge's `reset`, as after
  any episode. The console never calls `reset` itself: resetting the robot under a running episode would
  teleport it mid-episode. Without an actor reading the topic, reset is refused and the page is told.
- actors: every node with a `~/activate` std_srvs/SetBool service and a `~/status` String; its status
  (`robot_namespace`, state, the episode in progress: step, return, intervention) shows as the robot's
  mode, episode, step and return, and why it waits (`paused`). With `on_silence=hold`, when the driving
  page goes silent the console deactivates the actor (`~/activate` false: the bridge holds) and
  activates it again when a page takes control back.
- the run: the learner's `events` (robot_rl.ros.events) feed the page's curves and episode table;
  `learner_status` tells the pages when the learner goes silent and comes back.
Everything from the network is checked; what fails is dropped, counted and logged rate-limited.

Parameters: host (127.0.0.1), port (8765; 0: any free port), token ('': loopback only; `auto`: generate
one; else a secret of >= 16 characters: needed for any host but the loopback), on_silence (policy |
hold), max_silence_s (0.2), rate_hz (20), training_namespace (/robot_rl), robot_namespaces ([]:
discover).
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections import deque

import numpy as np
from rclpy.node import Node

from robot_rl.console.protocol import CAMERA_FPS, MAX_SILENCE_S, ON_SILENCE
from robot_rl.ros import contract
from robot_rl_ros.common import run_node, string_list

END_EPISODE = 4  # robot_rl.teleop.ros.END_EPISODE (imported lazily there: it needs rclpy's messages)
DISCOVERY_PERIOD_S = 1.0
WATCH_PERIOD_S = 0.5
ACTOR_SILENT_S = 2.0  # an actor status older than this: the actor went silent
LEARNER_SILENT_S = 3.0
ESTOP_RETRY_S = 1.0
MAX_STATUS_BYTES = 64 << 10


def guarded(what: str):
    """A callback whose exception is counted and logged (`internal`) instead of stopping the executor."""

    def wrap(method):
        @functools.wraps(method)
        def call(self, *args):
            try:
                return method(self, *args)
            except Exception as err:
                node = self.node if isinstance(self, RobotLink) else self
                node.rejects.add("internal", f"[console] {what}: {type(err).__name__}: {err} (internal)")

        return call

    return wrap


def refusing(method):
    """A hook for the web server: anything it raises reaches the page as a refusal (robot_rl.console.hub.Refused)."""

    @functools.wraps(method)
    def call(self, *args):
        from robot_rl.console.hub import Refused

        try:
            return method(self, *args)
        except Refused:
            raise
        except Exception as err:
            raise Refused(f"{self.ns}: {type(err).__name__}: {err}") from None

    return call


def parameter_error(err: ValueError) -> ValueError:
    """The web server's one-line error, naming this node's parameters (`port`), not the embedded
    config's keys (`console.port`)."""
    text = str(err).replace("console.", "")
    return ValueError(text if text.startswith("the console") else f"console {text}")


def check_namespace(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or value.endswith("/") and value != "/":
        raise ValueError(f"console {what}={value!r}: give an absolute ROS namespace such as /robot")
    return value


class RobotLink:
    """One robot: its hub, the bridge's topics and services, the teleop publisher, its actor."""

    def __init__(self, node: ConsoleNode, namespace: str) -> None:
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import JointState, Joy
        from std_msgs.msg import Float32, String
        from std_srvs.srv import SetBool

        from robot_rl.console.hub import Hooks, RobotHub

        self.node, self.ns = node, namespace
        self.hub = RobotHub(
            namespace,
            action_dim=4,  # the teleop contract's axes: x, y, z, gripper
            max_silence_s=node.max_silence_s,
            on_silence=node.on_silence,
            armed=False,  # until the bridge's status says otherwise
            hooks=Hooks(arm=self.arm, estop=self.estop, reset=self.reset),
        )
        self.Joy, self.SetBool = Joy, SetBool
        self.status: dict | None = None  # the bridge's newest status
        self.cameras: dict[str, object] = {}  # camera -> its subscription
        self.frame_at: dict[str, float] = {}
        self.codes: deque[int] = deque(maxlen=16)  # button codes to send, one per message
        self.actor: str | None = None  # the node path of the actor driving this robot
        self.actor_status: dict | None = None
        self.actor_seen = 0.0
        self.deactivated = False  # on_silence=hold: this console deactivated the actor
        self.readers = 0  # subscribers of the teleop topic (actors with teleop=ros)
        self.estop_sent = -math.inf  # monotonic time of the last estop(true) call
        self.warned_no_reader = -math.inf
        join = lambda name: contract.join(namespace, name)  # noqa: E731
        sensor, command = contract.qos("sensor"), contract.qos("command")
        self.subscriptions = [
            node.create_subscription(String, join(contract.ROBOT_STATUS.name), self.on_status, contract.qos("latched")),
            node.create_subscription(PoseStamped, join(contract.TCP_POSE.name), self.on_pose, sensor),
            node.create_subscription(JointState, join(contract.JOINT_STATES.name), self.on_joints, sensor),
            node.create_subscription(
                Float32, join(contract.SUCCESS_PROBABILITY.name), self.on_success_probability, command
            ),
        ]
        self.arm_client = node.create_client(SetBool, join(contract.ARM.name))
        self.estop_client = node.create_client(SetBool, join(contract.ESTOP.name))
        self.activate_client = None
        self.teleop_topic = join(contract.TELEOP.name)
        self.pub_teleop = node.create_publisher(Joy, self.teleop_topic, contract.qos(contract.TELEOP.qos))

    # ------------------------------------------------------------------ the bridge's topics
    @guarded("a bridge status")
    def on_status(self, msg) -> None:
        try:
            status = json.loads(msg.data) if len(msg.data) <= MAX_STATUS_BYTES else None
            if not (isinstance(status, dict) and isinstance(status.get("armed"), bool)):
                raise ValueError("not a bridge status (no armed flag)")
            if not isinstance(status.get("estop"), bool):
                raise ValueError("not a bridge status (no estop flag)")
        except ValueError as err:
            self.node.rejects.add("status", f"[console] dropped a status message on {self.ns}/status: {err}")
            return
        self.status = status
        self.hub.set_flags(status["armed"], status["estop"], "engaged at the bridge")
        top = status.get("gripper_max_opening")
        self.hub.publish(gripper_max=float(top) if isinstance(top, (int, float)) else None)
        cameras = status.get("cameras")
        for camera in cameras if isinstance(cameras, list) else []:
            if isinstance(camera, str) and camera not in self.cameras and len(self.cameras) < 16:
                self.add_camera(camera)
        self.update_view()

    def add_camera(self, camera: str) -> None:
        from sensor_msgs.msg import Image

        topic = contract.join(self.ns, contract.IMAGE.name.format(camera=camera))
        try:
            self.cameras[camera] = self.node.create_subscription(
                Image, topic, lambda msg, c=camera: self.on_image(c, msg), contract.qos("sensor")
            )
        except Exception as err:  # an invalid topic name from a hostile status
            self.node.rejects.add("camera", f"[console] camera {camera[:40]!r} of {self.ns}: {err}")

    @guarded("a camera frame")
    def on_image(self, camera: str, msg) -> None:
        from robot_rl.ros.frames import image_to_array

        now = time.monotonic()
        if now - self.frame_at.get(camera, -math.inf) < 1.0 / CAMERA_FPS:
            return
        try:
            if not (0 < msg.height <= 4096 and 0 < msg.width <= 4096):
                raise ValueError(f"a {msg.width}x{msg.height} image")
            rgb = np.array(image_to_array(msg))  # a copy: the hub keeps it
        except ValueError as err:
            self.node.rejects.add("image", f"[console] dropped a frame of {self.ns} {camera}: {err}")
            return
        self.frame_at[camera] = now
        self.hub.publish_frame(camera, rgb)

    @guarded("a TCP pose")
    def on_pose(self, msg) -> None:
        p = msg.pose.position
        tcp = [float(p.x), float(p.y), float(p.z)]
        if all(math.isfinite(v) for v in tcp):
            self.hub.publish(tcp=tcp)

    @guarded("joint states")
    def on_joints(self, msg) -> None:
        names, positions = list(msg.name), list(msg.position)
        if len(names) != len(positions) or len(names) > 64:
            self.node.rejects.add("joint_states", f"[console] dropped joint states of {self.ns}: malformed")
            return
        status = self.status or {}
        limits = status.get("joint_limits") if isinstance(status.get("joint_limits"), list) else None
        arm_names = status.get("joint_names") if isinstance(status.get("joint_names"), list) else []
        joints, gripper = [], None
        for name, pos in zip(names, positions):
            pos = float(pos)
            if name == contract.GRIPPER_JOINT:
                gripper = pos if math.isfinite(pos) else None
                continue
            low = high = proximity = None
            i = arm_names.index(name) if name in arm_names else -1
            if limits is not None and 0 <= i < len(limits):
                try:
                    low, high = (float(v) for v in limits[i])
                    half = max((high - low) / 2.0, 1e-9)
                    proximity = float(np.clip(abs(pos - (low + high) / 2.0) / half, 0.0, 1.0))
                except (TypeError, ValueError):
                    low = high = proximity = None
            joints.append({"name": str(name)[:40], "pos": pos, "low": low, "high": high, "proximity": proximity})
        self.hub.publish(joints=joints, gripper=gripper)

    @guarded("a success probability")
    def on_success_probability(self, msg) -> None:
        value = float(msg.data)
        self.hub.publish(success_probability=value if math.isfinite(value) else None)

    # ------------------------------------------------------------------ the actor
    def on_actor_status(self, path: str, status: dict) -> None:
        from std_srvs.srv import SetBool

        if path != self.actor:
            self.actor = path
            self.activate_client = self.node.create_client(SetBool, contract.join(path, "activate"))
            self.node.get_logger().info(f"{self.ns}: actor {path}")
        self.actor_status, self.actor_seen = status, time.monotonic()
        self.update_view()

    def update_view(self) -> None:
        """mode, episode, step, return and `paused` from the bridge's flags and the actor's status."""
        view: dict = {}
        actor = self.actor_status
        fresh = actor is not None and time.monotonic() - self.actor_seen <= ACTOR_SILENT_S
        state = str(actor.get("state", "")) if fresh else ""
        if fresh:
            for key, field, kind in (
                ("episodes", "episode", int),
                ("episode_step", "step", int),
                ("episode_return", "episode_return", float),
            ):
                value = actor.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    view[field] = kind(value)
        view["mode"] = "policy" if state == "acting" else "idle"
        if self.hub.estopped:
            paused = f"e-stop: {self.hub.estop_reason}"
        elif self.status is None:
            paused = "waiting for the bridge's status"
        elif not self.hub.armed:
            paused = "disarmed"
        elif actor is None:
            paused = "no actor drives this robot"
        elif not fresh:
            paused = "the actor went silent"
        elif state != "acting":
            paused = f"actor: {state[:80]}"
        else:
            paused = ""
        view["paused"] = paused
        self.hub.publish(**view)

    # ------------------------------------------------------------------ teleop
    @guarded("a teleop tick")
    def tick(self) -> None:
        """One teleop message (the page's command, or idle) and the hold rule."""
        command = self.hub.read_command()
        if int(command.label):
            self.codes.append(int(command.label))
        if command.end_episode:
            self.codes.append(END_EPISODE)
        msg = self.Joy()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = self.node.sender
        msg.axes = [float(a) for a in command.action[:4]]
        msg.buttons = [int(bool(command.active)), self.codes.popleft() if self.codes else 0]
        self.pub_teleop.publish(msg)
        if command.active and self.readers == 0 and time.monotonic() - self.warned_no_reader > 5.0:
            self.warned_no_reader = time.monotonic()
            self.hub.notice("warn", f"{self.ns}: {self.no_reader()}")
        self.hold_rule()

    def no_reader(self) -> str:
        return f"no actor reads {self.teleop_topic}: start the robot's actor with teleop=ros to drive, label or reset"

    def hold_rule(self) -> None:
        """on_silence=hold: the actor is deactivated while the hub holds, activated again after."""
        holding = self.hub.holding
        if holding and not self.deactivated and self.actor_status and self.actor_status.get("active"):
            if self.call(self.activate_client, False, "activate"):
                self.deactivated = True
                self.hub.notice("warn", f"{self.ns}: the actor is stopped until a page takes control")
        elif not holding and self.deactivated and self.call(self.activate_client, True, "activate"):
            self.deactivated = False

    # ------------------------------------------------------------------ hooks (the web server's thread)
    def call(self, client, value: bool, what: str) -> bool:
        """Call a SetBool service without waiting; a refusal or error shows on the page. False when the
        service is not there."""
        if client is None or not client.service_is_ready():
            return False
        future = client.call_async(self.SetBool.Request(data=bool(value)))
        future.add_done_callback(lambda f: self.answered(f, what, value))
        return True

    @guarded("a service answer")
    def answered(self, future, what: str, value: bool) -> None:
        try:
            response = future.result()
        except Exception as err:
            response, message = None, f"{type(err).__name__}: {err}"
        else:
            message = response.message if response is not None else "no answer"
        if response is None or not response.success:
            self.hub.notice("error", f"{self.ns}: {what} {str(value).lower()} refused: {message[:200]}")
            if self.status is not None:  # back to the bridge's own flags
                self.hub.set_flags(self.status["armed"], self.status["estop"], "engaged at the bridge")

    @refusing
    def arm(self, on: bool) -> None:
        from robot_rl.console.hub import Refused

        if not self.call(self.arm_client, on, "arm"):
            raise Refused(f"{self.ns}: the bridge's {self.ns}/arm service is not answering; is the bridge running?")

    def send_estop(self, notify: bool) -> None:
        """estop(true) to the bridge; never raises (every robot must get its e-stop)."""
        self.estop_sent = time.monotonic()
        if not self.call(self.estop_client, True, "estop") and notify:
            self.hub.notice(
                "error",
                f"{self.ns}: the E-STOP did not reach {self.ns}/estop (the bridge is not answering; retrying): "
                "stop the robot at its own e-stop",
            )

    @refusing
    def estop(self, on: bool, reason: str) -> None:
        from robot_rl.console.hub import Refused

        if on:
            self.send_estop(notify=True)
        elif not self.call(self.estop_client, False, "estop"):
            raise Refused(f"{self.ns}: the bridge's {self.ns}/estop service is not answering: the e-stop stays latched")

    @refusing
    def reset(self) -> None:
        from robot_rl.console.hub import Refused

        if self.pub_teleop.get_subscription_count() == 0:
            raise Refused(f"{self.ns}: {self.no_reader()}")

    # ------------------------------------------------------------------ watchdog (the node's thread)
    @guarded("the robot watchdog")
    def watch(self) -> None:
        readers = self.pub_teleop.get_subscription_count()
        if readers != self.readers:
            if readers == 0:
                self.hub.notice("warn", f"{self.ns}: {self.no_reader()}")
            elif self.readers == 0 and self.warned_no_reader > -math.inf:
                self.hub.notice("info", f"{self.ns}: an actor reads the console's teleop commands again")
            self.readers = readers
        now = time.monotonic()
        if (
            self.hub.estopped
            and self.status is not None
            and not self.status["estop"]
            and now - self.estop_sent > ESTOP_RETRY_S
        ):
            self.send_estop(notify=False)  # the bridge has not latched it yet: again
        self.update_view()


class ConsoleNode(Node):
    def __init__(self) -> None:
        super().__init__("console")
        from std_msgs.msg import String

        from robot_rl.console.hub import Console, RobotHub
        from robot_rl.console.server import ConsoleServer
        from robot_rl.runtime.wire import RejectCounter

        self.server = None
        p = lambda name, default: self.declare_parameter(name, default).value  # noqa: E731
        host = str(p("host", "127.0.0.1"))
        port = int(p("port", 8765))
        token = str(p("token", ""))
        self.on_silence = str(p("on_silence", "policy"))
        self.max_silence_s = float(p("max_silence_s", MAX_SILENCE_S))
        rate = float(p("rate_hz", 20.0))
        self.training_namespace = check_namespace(
            str(p("training_namespace", contract.DEFAULT_TRAINING_NAMESPACE)), "training_namespace"
        )
        self.fixed = [check_namespace(ns, "robot_namespaces item") for ns in string_list(self, "robot_namespaces")]
        if self.on_silence not in ON_SILENCE:
            raise ValueError(f"console on_silence={self.on_silence!r}: choose one of {', '.join(ON_SILENCE)}")
        if not 0 < self.max_silence_s <= 10:
            raise ValueError(f"console max_silence_s={self.max_silence_s}: give 0 < seconds <= 10 (default 0.2)")
        if not 1 <= rate <= 200:
            raise ValueError(f"console rate_hz={rate}: give 1..200 teleop messages per second (default 20)")
        RobotHub("check", max_silence_s=self.max_silence_s, on_silence=self.on_silence)  # the hub's own checks
        self.sender = self.get_fully_qualified_name()
        self.console = Console()
        self.robots: dict[str, RobotLink] = {}
        self.actors: dict[str, object] = {}  # actor node path -> its status subscription
        self.actor_robot: dict[str, str] = {}  # actor id -> robot namespace (for the episode table)
        self.rejects = RejectCounter(lambda text: self.get_logger().warning(text))
        self.learner_seen: float | None = None
        self.learner_ok = False
        self.events = 0
        self.String = String
        ns = self.training_namespace
        self.create_subscription(
            String, contract.join(ns, contract.EVENTS.name), self.on_event, contract.qos(contract.EVENTS.qos)
        )
        self.create_subscription(
            String, contract.join(ns, contract.LEARNER_STATUS.name), self.on_learner_status, contract.qos("command")
        )
        try:
            self.server = ConsoleServer(self.console, host, port, token or None, log=self.get_logger().info)
        except ValueError as err:  # named as the node's parameters, not the embedded config's `console.*` keys
            raise parameter_error(err) from None
        for namespace in self.fixed:
            self.add_robot(namespace)
        self.discover()
        self.create_timer(DISCOVERY_PERIOD_S, self.discover)
        self.create_timer(1.0 / rate, self.tick)
        self.create_timer(WATCH_PERIOD_S, self.watch)
        try:
            self.server.start()
        except ValueError as err:
            raise parameter_error(err) from None
        self.get_logger().info(
            f"console for {', '.join(self.fixed) if self.fixed else 'every robot bridge found'}, training "
            f"namespace {ns}, teleop at {rate:g} Hz, on_silence={self.on_silence}"
        )

    # ------------------------------------------------------------------ discovery
    def add_robot(self, namespace: str) -> None:
        link = RobotLink(self, namespace)
        self.robots[namespace] = link
        self.console.add_robot(link.hub)
        self.get_logger().info(f"robot {namespace}")

    @guarded("discovery")
    def discover(self) -> None:
        topics = {name: set(types) for name, types in self.get_topic_names_and_types()}
        if not self.fixed:
            for name, types in topics.items():
                if not name.endswith("/" + contract.ROBOT_STATUS.name) or contract.ROBOT_STATUS.type not in types:
                    continue
                namespace = name[: -len(contract.ROBOT_STATUS.name) - 1] or "/"
                joints = contract.join(namespace, contract.JOINT_STATES.name)
                if namespace not in self.robots and contract.JOINT_STATES.type in topics.get(joints, ()):
                    self.add_robot(namespace)
        for name, types in self.get_service_names_and_types():
            if not name.endswith("/activate") or contract.ACTIVATE.type not in types:
                continue
            path = name[: -len("/activate")]
            status = contract.join(path, "status")
            if path not in self.actors and contract.ACTOR_STATUS.type in topics.get(status, ()):
                self.actors[path] = self.create_subscription(
                    self.String, status, lambda msg, a=path: self.on_actor_status(a, msg), contract.qos("command")
                )

    @guarded("an actor status")
    def on_actor_status(self, path: str, msg) -> None:
        try:
            status = json.loads(msg.data) if len(msg.data) <= MAX_STATUS_BYTES else None
            if not isinstance(status, dict) or not isinstance(status.get("robot_namespace"), str):
                raise ValueError("no robot_namespace (an actor from before the console?)")
        except ValueError as err:
            self.rejects.add("actor_status", f"[console] dropped a status of {path}: {err}")
            return
        link = self.robots.get(status["robot_namespace"])
        if isinstance(status.get("actor"), str) and len(self.actor_robot) < 1024:
            self.actor_robot[status["actor"]] = status["robot_namespace"]
        if link is not None:
            link.on_actor_status(path, status)

    # ------------------------------------------------------------------ the run
    @guarded("a run event")
    def on_event(self, msg) -> None:
        from robot_rl.ros.events import decode_event

        try:
            event = decode_event(msg.data)
        except ValueError as err:
            self.rejects.add("event", f"[console] dropped an events message: {err}")
            return
        self.console.telemetry.emit(event, robot=self.actor_robot.get(getattr(event, "actor", ""), ""))
        self.events += 1

    def on_learner_status(self, msg) -> None:
        self.learner_seen = time.monotonic()

    # ------------------------------------------------------------------ timers
    def tick(self) -> None:
        for link in list(self.robots.values()):
            link.tick()

    @guarded("the watchdog")
    def watch(self) -> None:
        ok = self.learner_seen is not None and time.monotonic() - self.learner_seen <= LEARNER_SILENT_S
        if ok != self.learner_ok and self.learner_seen is not None:
            for link in self.robots.values():
                if ok:
                    link.hub.notice("info", "the learner is up")
                else:
                    link.hub.notice("warn", "the learner went silent: actors hold or act on with their last weights")
        self.learner_ok = ok
        for link in list(self.robots.values()):
            link.watch()

    def shutdown(self) -> None:
        if self.server is not None:
            self.server.close()


def main(args: list[str] | None = None) -> None:
    run_node(ConsoleNode, args)


if __name__ == "__main__":
    main()
