"""The ROS 2 topic and service contract, as data: names, message types, QoS and who talks.

One table for every node and for `robot_rl.robots.ros`; `ros_ws/README.md` documents it in prose
and a test checks the two agree. Nothing here imports rclpy at module import time (`qos` does, lazily).

Robot names are relative: they live in the robot's namespace (e.g. `/robot0/joint_states`), so
several bridges can run side by side. Learner names are relative to the training namespace
(default `/robot_rl`). Actor names are relative to the actor node (`~/activate`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    name: str  # relative topic or service name ("{camera}" / "{object}" are filled in per robot)
    type: str  # ROS interface type, e.g. "sensor_msgs/msg/JointState"
    qos: str  # "sensor" (best effort, depth 5; reliable when the bridge is lock-stepped), "command"
    # (reliable, depth 10), "latched" (reliable, transient local, depth 1), "stream" (reliable, keep all),
    # "events" (reliable, depth 100) or "service"
    source: str  # who publishes / serves
    sinks: str  # who subscribes / calls
    meaning: str


# --- the robot bridge (sim and hardware publish the same) -------------------------------------
JOINT_STATES = Endpoint(
    "joint_states",
    "sensor_msgs/msg/JointState",
    "sensor",
    "robot_bridge",
    "RosRobot",
    "arm joints (rad, rad/s) and `gripper` (opening between the pads, m)",
)
TCP_POSE = Endpoint(
    "tcp_pose",
    "geometry_msgs/msg/PoseStamped",
    "sensor",
    "robot_bridge",
    "RosRobot",
    "TCP pose in the base frame (m, quaternion)",
)
TCP_TWIST = Endpoint(
    "tcp_twist",
    "geometry_msgs/msg/TwistStamped",
    "sensor",
    "robot_bridge",
    "RosRobot",
    "TCP velocity in the base frame (m/s, rad/s)",
)
WRENCH = Endpoint(
    "wrench",
    "geometry_msgs/msg/WrenchStamped",
    "sensor",
    "robot_bridge",
    "monitoring",
    "contact wrench on the hand in the base frame (N, N m)",
)
OBJECT_POSE = Endpoint(
    "objects/{object}/pose",
    "geometry_msgs/msg/PoseStamped",
    "sensor",
    "robot_bridge",
    "RosRobot",
    "pose of a tracked object (sim: ground truth; hardware: perception)",
)
IMAGE = Endpoint(
    "image/{camera}",
    "sensor_msgs/msg/Image",
    "sensor",
    "robot_bridge",
    "RosRobot, reward_classifier",
    "camera frame, rgb8",
)
ROBOT_STATUS = Endpoint(
    "status",
    "std_msgs/msg/String",
    "latched",
    "robot_bridge",
    "RosRobot",
    "JSON: armed, estop, mode, reliable_sensors, control_dt, workspace, gripper_max_opening, joint_names, "
    "joint_limits, cameras, objects",
)
CMD_TWIST = Endpoint(
    "cmd/tcp_twist",
    "geometry_msgs/msg/TwistStamped",
    "command",
    "actor (RosRobot)",
    "robot_bridge",
    "TCP velocity for one control period (m/s); header.stamp = the stamp of the observation it answers",
)
CMD_GRIPPER = Endpoint(
    "cmd/gripper",
    "sensor_msgs/msg/JointState",
    "command",
    "actor (RosRobot)",
    "robot_bridge",
    "`gripper` target opening (m); header.stamp as for cmd/tcp_twist",
)
RESET = Endpoint(
    "reset",
    "std_srvs/srv/Trigger",
    "service",
    "robot_bridge",
    "RosRobot",
    "home pose, gripper open, at rest (sim: objects placed at random)",
)
ARM = Endpoint(
    "arm",
    "std_srvs/srv/SetBool",
    "service",
    "robot_bridge",
    "operator",
    "true: execute commands; false: ignore them and hold",
)
ESTOP = Endpoint(
    "estop",
    "std_srvs/srv/SetBool",
    "service",
    "robot_bridge",
    "operator",
    "true: latched stop (holds, ignores commands and resets); false: clear (stays disarmed)",
)
BRIDGE_STATS = Endpoint(
    "stats",
    "std_srvs/srv/Trigger",
    "service",
    "robot_bridge",
    "bench",
    "JSON: control period jitter, observation-to-command latency, rejected commands",
)
SUCCESS_PROBABILITY = Endpoint(
    "success_probability",
    "std_msgs/msg/Float32",
    "command",
    "reward_classifier",
    "monitoring",
    "classifier success probability of the latest camera frames",
)
TELEOP = Endpoint(
    "teleop/command",
    "sensor_msgs/msg/Joy",
    "command",
    "teleop, console",
    "actor",
    "axes: action in [-1, 1] (x, y, z, gripper); buttons: [active, label (0 none, 1 success, 2 failure, 3 discard, "
    "4 end the episode now)]; header.frame_id: the sender",
)

# --- actor <-> learner (training namespace) -----------------------------------------------------
TRANSITIONS = Endpoint(
    "transitions",
    "std_msgs/msg/UInt8MultiArray",
    "stream",
    "actor",
    "learner",
    "a chunk of one episode's steps (robot_rl.runtime.wire: npz bytes, no pickle)",
)
POLICY_WEIGHTS = Endpoint(
    "policy_weights",
    "std_msgs/msg/UInt8MultiArray",
    "latched",
    "learner",
    "actor",
    "the policy's weights and their version (npz bytes); late joiners get the latest",
)
LEARNER_STATUS = Endpoint(
    "learner_status",
    "std_msgs/msg/String",
    "command",
    "learner",
    "actor",
    "JSON heartbeat: updates, steps received and trained, episodes, weights version",
)
ACTIVATE = Endpoint(
    "~/activate",
    "std_srvs/srv/SetBool",
    "service",
    "actor",
    "operator",
    "true: start acting; false: stop and hold (actors start inactive)",
)
ACTOR_STATUS = Endpoint(
    "~/status",
    "std_msgs/msg/String",
    "command",
    "actor",
    "monitoring",
    "JSON heartbeat: active, state, learner_ok, weights version, env steps, episodes, robot_namespace, "
    "the episode in progress (episode_step, episode_return, intervention)",
)
EVENTS = Endpoint(
    "events",
    "std_msgs/msg/String",
    "events",
    "learner",
    "console",
    "JSON: one run event (robot_rl.data.schema.event_to_json: kind and fields), every kind but per-step ones",
)

ROBOT_ENDPOINTS = (
    JOINT_STATES,
    TCP_POSE,
    TCP_TWIST,
    WRENCH,
    OBJECT_POSE,
    IMAGE,
    ROBOT_STATUS,
    CMD_TWIST,
    CMD_GRIPPER,
    RESET,
    ARM,
    ESTOP,
    BRIDGE_STATS,
    SUCCESS_PROBABILITY,
    TELEOP,
)
LEARNING_ENDPOINTS = (TRANSITIONS, POLICY_WEIGHTS, LEARNER_STATUS, ACTIVATE, ACTOR_STATUS, EVENTS)
ALL_ENDPOINTS = ROBOT_ENDPOINTS + LEARNING_ENDPOINTS

GRIPPER_JOINT = "gripper"
BASE_FRAME = "base"
DEFAULT_ROBOT_NAMESPACE = "/robot"
DEFAULT_TRAINING_NAMESPACE = "/robot_rl"


def qos(kind: str, reliable_sensors: bool = False):
    """The rclpy QoSProfile for a contract QoS kind (imports rclpy)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    if kind == "sensor":
        if not reliable_sensors:
            return qos_profile_sensor_data
        return QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
    if kind == "command":
        return QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
    if kind == "events":  # a burst per committed episode fits; a reader that falls behind never blocks the writer
        return QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
    if kind == "stream":  # keep all: a burst (an actor flushing its kept episodes) must not drop any
        return QoSProfile(depth=100, history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
    if kind == "latched":
        return QoSProfile(
            depth=1,
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
    raise ValueError(f"unknown QoS kind {kind!r}: one of sensor, command, events, stream, latched")


def join(namespace: str, name: str) -> str:
    """`name` inside `namespace` ("/robot0" + "joint_states" -> "/robot0/joint_states")."""
    return f"{namespace.rstrip('/')}/{name}" if namespace and namespace != "/" else f"/{name}"


def require_rclpy():
    """Import rclpy or raise a one-line error naming the fix."""
    try:
        import rclpy
    except ImportError:
        raise ImportError(
            'rclpy is not installed: pip install "robot_rl[ros]" (ROS 2 Jazzy rclpy wheels) '
            "or source a ROS 2 installation"
        ) from None
    return rclpy
