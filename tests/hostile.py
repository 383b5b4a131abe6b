"""Hostile network input for robot_rl's ROS nodes: what anyone on the DDS domain could publish.

Reusable by the tests (tests/test_hostile.py) and the fault bench: each builder returns `Hostile`
cases (a name, the counter kind the receiver must count it under, and the message(s) to send), and
`flood` publishes maximum-size payloads on a topic for a while. rclpy is imported inside the
functions that build or send ROS messages, so the chunk builders work without ROS.

- `hostile_twists(stamp)` / `hostile_grippers(stamp, max_opening)`: commands for a robot bridge's
  `cmd/tcp_twist` and `cmd/gripper` (kinds as the bridge's `stats` service counts them under `invalid`);
  `CommandInjector` sends them, one per observation, stamped to answer it (so none is merely stale).
- `hostile_chunks(steps, spec)`: episode payloads for the learner's `transitions` topic (kinds as
  `learner_status` counts them under `rejected`), each a whole one-chunk episode with one defect, so
  that a missed check would show as a committed episode.
- `flood(topic, domain_id, seconds)`: a publisher sending 4 MB chunks as fast as it can.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import io
import json
import pickle
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from robot_rl.data.schema import EpisodeSource, Transition
from robot_rl.runtime.wire import HEADER, encode_chunk, space_to_json

FLOOD_BYTES = 4 << 20  # the size of an actor's largest chunk


@dataclass
class Hostile:
    name: str  # what it is, for messages
    kind: str  # the counter it must land in
    messages: list = field(default_factory=list)  # sent in order (one payload or ROS message, or a sequence)


# ------------------------------------------------------------------------------------ robot bridge
def _time(seconds: float):
    from builtin_interfaces.msg import Time

    sec = int(seconds)
    return Time(sec=sec, nanosec=min(int(round((seconds - sec) * 1e9)), 999_999_999))


def twist(stamp: float, linear=(0.0, 0.0, 0.0), angular=(0.0, 0.0, 0.0), frame: str = "base"):
    """A TwistStamped command answering the observation stamped `stamp` (seconds)."""
    from geometry_msgs.msg import TwistStamped

    msg = TwistStamped()
    msg.header.stamp, msg.header.frame_id = _time(stamp), frame
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(v) for v in linear)
    msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = (float(v) for v in angular)
    return msg


def gripper(stamp: float, names=("gripper",), positions=(0.08,)):
    """A JointState gripper command answering the observation stamped `stamp`."""
    from sensor_msgs.msg import JointState

    msg = JointState()
    msg.header.stamp = _time(stamp)
    msg.name, msg.position = list(names), [float(p) for p in positions]
    return msg


def hostile_twists(stamp: float) -> list[Hostile]:
    """Twists a bridge must drop (each answers `stamp`, so none is merely stale)."""
    nan, inf = float("nan"), float("inf")
    bad_stamp = twist(stamp)
    bad_stamp.header.stamp.nanosec = 4_000_000_000  # a Time holds integers (no NaN): an unnormalised one
    negative_stamp = twist(stamp)
    negative_stamp.header.stamp.sec = -5
    return [
        Hostile("NaN linear velocity", "twist_nonfinite", [twist(stamp, (nan, 0.0, 0.0))]),
        Hostile("infinite linear velocity", "twist_nonfinite", [twist(stamp, (0.0, -inf, 0.0))]),
        Hostile("NaN angular velocity", "twist_nonfinite", [twist(stamp, angular=(0.0, nan, 0.0))]),
        Hostile("over-speed (5 m/s)", "twist_overspeed", [twist(stamp, (0.0, 0.0, -5.0))]),
        Hostile("a rotation the bridge cannot execute", "twist_angular", [twist(stamp, angular=(0.0, 0.0, 0.5))]),
        Hostile("another frame", "twist_frame", [twist(stamp, (0.01, 0.0, 0.0), frame="world")]),
        Hostile("nanosec past one second", "stamp_invalid", [bad_stamp]),
        Hostile("negative stamp", "stamp_invalid", [negative_stamp]),
    ]


def hostile_rotations(stamp: float) -> list[Hostile]:
    """Twists a bridge whose task acts in rotation must drop: a rotation too fast, and a NaN one."""
    return [
        Hostile("angular over-speed (50 rad/s)", "twist_angular_overspeed", [twist(stamp, angular=(0.0, 50.0, 0.0))]),
        Hostile("NaN angular velocity", "twist_nonfinite", [twist(stamp, angular=(float("nan"), 0.0, 0.0))]),
    ]


def hostile_grippers(stamp: float, max_opening: float = 0.08) -> list[Hostile]:
    """Gripper commands a bridge must drop."""
    nan = float("nan")
    return [
        Hostile("no gripper joint", "gripper_no_joint", [gripper(stamp, ("finger",), (0.04,))]),
        Hostile(
            "names and positions of different lengths",
            "gripper_malformed",
            [gripper(stamp, ("gripper", "joint1"), (0.04,))],
        ),
        Hostile("the gripper joint twice", "gripper_malformed", [gripper(stamp, ("gripper", "gripper"), (0.0, 0.08))]),
        Hostile("NaN opening", "gripper_nonfinite", [gripper(stamp, positions=(nan,))]),
        Hostile("opening past the maximum", "gripper_range", [gripper(stamp, positions=(max_opening + 0.05,))]),
        Hostile("negative opening", "gripper_range", [gripper(stamp, positions=(-0.02,))]),
    ]


class CommandInjector:
    """Watches a bridge's `tcp_pose`; on each new observation publishes the next hostile command of
    `cases` (cycling; twists on `cmd/tcp_twist`, the rest on `cmd/gripper`), stamped to answer that
    observation (a case whose stamp is itself the defect keeps its own), and records every TCP
    position published. `node`: an rclpy node that is being spun; `active = False` stops it."""

    def __init__(self, node, namespace: str, cases: list[Hostile]) -> None:
        from geometry_msgs.msg import PoseStamped, TwistStamped
        from sensor_msgs.msg import JointState

        from robot_rl.ros import contract

        self.cases = cases
        self.positions: list[tuple[float, float, float]] = []
        self.sent: dict[str, int] = {}
        self.index = 0
        self.active = True
        self.lock = threading.Lock()
        command = contract.qos("command")
        self.pub_twist = node.create_publisher(TwistStamped, contract.join(namespace, contract.CMD_TWIST.name), command)
        self.pub_grip = node.create_publisher(JointState, contract.join(namespace, contract.CMD_GRIPPER.name), command)
        node.create_subscription(
            PoseStamped, contract.join(namespace, contract.TCP_POSE.name), self.on_pose, contract.qos("sensor")
        )

    def on_pose(self, msg) -> None:
        p = msg.pose.position
        with self.lock:
            self.positions.append((p.x, p.y, p.z))
            if not self.active:
                return
            case = self.cases[self.index % len(self.cases)]
            self.index += 1
        for template in case.messages:
            out = copy.deepcopy(template)
            stamp = template.header.stamp
            if stamp.sec >= 0 and stamp.nanosec < 1_000_000_000:  # a well-formed stamp: answer this observation
                out.header.stamp = msg.header.stamp
            (self.pub_twist if hasattr(out, "twist") else self.pub_grip).publish(out)
            with self.lock:
                self.sent[case.kind] = self.sent.get(case.kind, 0) + 1


# ---------------------------------------------------------------------------------- learner chunks
def scripted_episode(
    task: str = "pick_cube", seed: int = 0, overrides: tuple[str, ...] = ()
) -> tuple[list[Transition], dict]:
    """One episode of the task's scripted expert in the in-process sim: (steps, spec), where spec is
    what an actor sends with an episode's first chunk."""
    from robot_rl.config import compose
    from robot_rl.envs.factory import make_env
    from robot_rl.runtime.rollout import run_episode
    from robot_rl.tasks import make_expert

    env = make_env(compose("train", [f"task={task}", *overrides]), seed=seed)
    try:
        expert = make_expert(env, noise=0.0, rng=np.random.default_rng(seed))
        steps: list[Transition] = []
        run_episode(env, expert.act, seed, 0, steps.append)
        spec = {"observation": space_to_json(env.observation_space), "action_dim": int(env.action_space.shape[0])}
    finally:
        env.close()
    return steps, json.loads(json.dumps(spec))


def episode_chunks(
    steps: list[Transition],
    spec: dict,
    actor: str = "hostile",
    episode: int = 0,
    chunk_steps: int | None = None,
    source: EpisodeSource = EpisodeSource.ONLINE,
) -> list[bytes]:
    """An actor's payloads for one episode (all of it in one chunk unless `chunk_steps`)."""
    size = chunk_steps or len(steps)
    starts = list(range(0, len(steps), size))
    return [
        encode_chunk(
            steps[i : i + size],
            actor,
            episode,
            n,
            final=n == len(starts) - 1,
            source=source,
            spec=spec if n == 0 else None,
        )
        for n, i in enumerate(starts)
    ]


def unpack(payload: bytes) -> tuple[dict[str, np.ndarray], dict]:
    """A chunk's arrays and header, as any numpy reads them (for building variants)."""
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return arrays, json.loads(arrays.pop(HEADER).tobytes().decode())


def repack(arrays: dict[str, np.ndarray], header: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{HEADER: np.frombuffer(json.dumps(header).encode(), np.uint8)})
    return buffer.getvalue()


def variant(payload: bytes, arrays=None, header=None) -> bytes:
    """`payload` with `arrays(dict)` / `header(dict)` applied to copies of its parts."""
    a, h = unpack(payload)
    a = {k: v.copy() for k, v in a.items()}
    if arrays is not None:
        arrays(a)
    if header is not None:
        header(h)
    return repack(a, h)


def _set(name, index, value):
    def apply(a):
        a[name] = a[name].astype(np.result_type(a[name].dtype, np.float32)) if isinstance(value, float) else a[name]
        a[name][index] = value

    return apply


def foreign_spec(spec: dict) -> dict:
    """`spec` with a one-wider state: what an actor of another task config would send."""
    out = json.loads(json.dumps(spec))
    state = out["observation"]["state"]
    state["shape"] = [state["shape"][0] + 1]
    state["low"], state["high"] = state["low"] + [0.0], state["high"] + [1.0]
    return out


def hostile_chunks(steps: list[Transition], spec: dict, actor: str = "mallory") -> list[Hostile]:
    """Episode payloads a learner must reject (none may reach its log, replay or spec.json). Each case
    is a whole one-chunk episode (with its own episode number) but for its defect; `gap` and
    `foreign spec` are sequences."""
    steps = steps[:20]
    good = lambda episode: episode_chunks(steps, spec, actor, episode)[0]  # noqa: E731
    nan, inf = float("nan"), float("inf")
    evil = io.BytesIO()
    np.savez(evil, **{"reward": np.array([object()], dtype=object)})
    wider = lambda obs: {"state": np.append(obs["state"], np.float32(0.5)).astype(np.float32)}  # noqa: E731
    foreign_steps = [
        Transition(
            observation=wider(t.observation),
            next_observation=wider(t.next_observation),
            action=t.action,
            policy_action=t.policy_action,
            reward=t.reward,
            terminated=t.terminated,
            truncated=t.truncated,
            step=t.step,
            timestamp=t.timestamp,
        )
        for t in steps
    ]
    gap = episode_chunks(steps, spec, actor, 120, chunk_steps=5)
    return [
        Hostile("garbage bytes", "malformed", [np.random.default_rng(0).bytes(5000)]),
        Hostile("a pickle", "malformed", [pickle.dumps({"spec": spec, "steps": ["..."]})]),
        Hostile("an npz with an object array (pickle inside)", "malformed", [evil.getvalue()]),
        Hostile(
            "weights on the transitions topic",
            "malformed",
            [variant(good(100), header=lambda h: h.update(kind="weights"))],
        ),
        Hostile("unknown reward_source", "enum", [variant(good(101), arrays=_set("reward_source", 3, 7))]),
        Hostile("unknown label", "enum", [variant(good(102), arrays=_set("label", -1, 9))]),
        Hostile("unknown episode source", "enum", [variant(good(103), header=lambda h: h.update(source=9))]),
        Hostile(
            "obs rows != steps",
            "shape",
            [variant(good(104), arrays=lambda a: a.update({"obs/state": a["obs/state"][:-1]}))],
        ),
        Hostile(
            "action and policy_action widths differ",
            "shape",
            [variant(good(105), arrays=lambda a: a.update(policy_action=a["policy_action"][:, :2]))],
        ),
        Hostile("missing reward", "malformed", [variant(good(106), arrays=lambda a: a.pop("reward"))]),
        Hostile("missing actor", "malformed", [variant(good(107), header=lambda h: h.pop("actor"))]),
        Hostile(
            "episode number is a string", "malformed", [variant(good(108), header=lambda h: h.update(episode="7"))]
        ),
        Hostile("NaN observation", "nonfinite", [variant(good(109), arrays=_set("obs/state", (2, 0), nan))]),
        Hostile(
            "infinite last next observation",
            "nonfinite",
            [variant(good(110), arrays=_set("last_next_obs/state", 1, inf))],
        ),
        Hostile("NaN action", "nonfinite", [variant(good(111), arrays=_set("action", (0, 0), nan))]),
        Hostile("infinite reward", "nonfinite", [variant(good(112), arrays=_set("reward", 4, inf))]),
        Hostile("NaN grasp penalty", "nonfinite", [variant(good(113), arrays=_set("grasp_penalty", 0, nan))]),
        Hostile("NaN reset time", "nonfinite", [variant(good(114), header=lambda h: h.update(reset_s=nan))]),
        Hostile("infinite frame age", "nonfinite", [variant(good(121), arrays=_set("frame_age_s", 2, inf))]),
        Hostile("negative frame age", "range", [variant(good(122), arrays=_set("frame_age_s", 0, -0.5))]),
        Hostile("unknown safety action bit", "enum", [variant(good(123), arrays=_set("safety", 1, 1 << 12))]),
        Hostile(
            "unknown perturbation value",
            "malformed",
            [variant(good(124), header=lambda h: h.update(perturbation={"wobble": 1.0}))],
        ),
        Hostile(
            "NaN perturbation value",
            "nonfinite",
            [variant(good(125), header=lambda h: h.update(perturbation={"friction": nan}))],
        ),
        Hostile("action out of [-1, 1]", "range", [variant(good(115), arrays=_set("action", (3, 1), 1.5))]),
        Hostile(
            "policy action out of [-1, 1]", "range", [variant(good(116), arrays=_set("policy_action", (3, 2), -4.0))]
        ),
        Hostile(
            "a foreign spec (another task config) in a first chunk",
            "spec",
            episode_chunks(foreign_steps, foreign_spec(spec), actor, 117),
        ),
        Hostile("a first chunk without its spec", "spec", [variant(good(118), header=lambda h: h.update(spec=None))]),
        Hostile("chunks 0, 1 then 3 (chunk 2 lost)", "gap", [gap[0], gap[1], gap[3]]),
        Hostile("an oversized payload (9 MiB)", "too_large", [oversized_payload(9 << 20)]),
    ]


def oversized_payload(size: int) -> bytes:
    """A chunk-shaped archive of about `size` bytes (one big observation)."""
    return flood_payload(size)


def flood_payload(size: int = FLOOD_BYTES, actor: str = "flood", episode: int = 0) -> bytes:
    """A well-formed first chunk of about `size` bytes: one step whose observation is a big image. It
    passes decoding, so the receiver spends the full decode on it before its spec check rejects it."""
    side = int(np.sqrt(max(size - 4096, 6) / 6))  # the frame travels twice: obs and last_next_obs
    image = np.full((side, side, 3), 7, np.uint8)
    step = Transition(
        observation={"image/front": image},
        next_observation={"image/front": image},
        action=np.zeros(4, np.float32),
        policy_action=np.zeros(4, np.float32),
        reward=0.0,
        terminated=False,
        truncated=False,
    )
    spec = {"observation": {"image/front": {"shape": [side, side, 3], "dtype": "uint8"}}, "action_dim": 4}
    return encode_chunk([step], actor, episode, 0, final=False, spec=spec)


# -------------------------------------------------------------------------------------------- flood
def flood(topic: str, domain_id: int, seconds: float, payload: bytes | None = None, wait_s: float = 20.0) -> dict:
    """Publish `payload` (default: a 4 MB chunk, `flood_payload`) on `topic` (std_msgs/UInt8MultiArray,
    reliable, keep last 10: the sender never blocks on a slow reader) as fast as possible for `seconds`,
    from a node of this process in DDS domain `domain_id`, once a subscriber is there (`wait_s` at
    most). Returns {"sent": messages, "bytes": total, "seconds": elapsed, "rate_mb_s": ...}."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import UInt8MultiArray

    from robot_rl.ros.node import BackgroundNode

    payload = flood_payload() if payload is None else payload
    ros = BackgroundNode("hostile_flood", domain_id)
    try:
        qos = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        pub = ros.node.create_publisher(UInt8MultiArray, topic, qos)
        deadline = time.monotonic() + wait_s
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        msg = UInt8MultiArray()
        msg.data = payload
        sent, start = 0, time.monotonic()
        while time.monotonic() - start < seconds:
            pub.publish(msg)
            sent += 1
        elapsed = time.monotonic() - start
    finally:
        ros.close()
    return {
        "sent": sent,
        "bytes": sent * len(payload),
        "seconds": round(elapsed, 2),
        "rate_mb_s": round(sent * len(payload) / elapsed / 1e6, 1),
    }


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` (VmRSS), MB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


@contextlib.contextmanager
def peak_rss(pid: int, period_s: float = 0.1):
    """Sample the resident memory of `pid` while the block runs; yields a dict that holds `baseline`
    (before) and `peak` (MB) once the block is over."""
    result = {"baseline": rss_mb(pid), "peak": 0.0}
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(rss_mb(pid))
            time.sleep(period_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        result["peak"] = max(samples, default=result["baseline"])


def transitions_publisher(node, topic: str = "/robot_rl/transitions", timeout: float = 60.0):
    """A function that publishes a payload on the learner's episode stream from `node` (spun elsewhere),
    once the learner has subscribed (an AssertionError after `timeout` s)."""
    from std_msgs.msg import UInt8MultiArray

    from robot_rl.ros import contract

    pub = node.create_publisher(UInt8MultiArray, topic, contract.qos("stream"))
    deadline = time.monotonic() + timeout
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pub.get_subscription_count() > 0, "the learner never subscribed"

    def send(payload: bytes) -> None:
        msg = UInt8MultiArray()
        msg.data = payload
        pub.publish(msg)

    return send


def send_cases(send, cases: list[Hostile]) -> dict[str, int]:
    """Send every message of every case; returns how many rejections of each kind they must cause."""
    for case in cases:
        for payload in case.messages:
            send(payload)
    return dict(collections.Counter(case.kind for case in cases))
