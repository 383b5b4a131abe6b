"""actor: RobotEnv over ROS (robot=ros) + the current policy; streams episodes to the learner.

Starts inactive; acts after `~/activate` (std_srvs/SetBool) true, stops (and the bridge holds) on false.
Training mode (no `policy`): waits for the learner's heartbeat, records `num_demos` scripted demos
if the learner has fewer, then acts with the newest weights the learner published. If the learner
goes silent for `learner_timeout_s`: `on_learner_lost=hold` drops the episode in progress and sends
nothing until it returns; `keep` goes on with the last weights and keeps finished episodes (up to
`outbox_episodes`) until it returns. `max_steps_ahead` >= 0 makes an episode wait until the learner
has committed this actor's previous episode and has at most that many received steps left to train
on (0 with a lock-stepped sim: the embedded runner's pacing).
Deploy mode (`policy` = a run directory): a fixed policy, deterministic, no learner.
A command is never sent from an observation older than one control period (RosRobot refuses).

Parameters: overrides, training_namespace, actor_id, policy, deterministic, num_demos, episodes
(0 = no limit), on_learner_lost, learner_timeout_s, max_steps_ahead, outbox_episodes, start_active.
"""
from __future__ import annotations

import json
import time
from collections import deque

from rclpy.node import Node

from robot_rl.ros import contract
from robot_rl.data.schema import EpisodeSource
from robot_rl.robots.ros import RobotUnavailable
from robot_rl.runtime.wire import RejectCounter, WireError
from robot_rl.tasks.reset import ResetError
from robot_rl_ros.common import node_config, run_node, start_worker


class ActorNode(Node):
    def __init__(self) -> None:
        super().__init__("actor")
        from std_msgs.msg import String, UInt8MultiArray
        from std_srvs.srv import SetBool

        from robot_rl.runtime.remote_actor import RemoteActor

        cfg = node_config(self)
        p = lambda name, default: self.declare_parameter(name, default).value  # noqa: E731
        ns = p("training_namespace", contract.DEFAULT_TRAINING_NAMESPACE)
        self.actor_id = p("actor_id", "") or self.get_fully_qualified_name()
        policy = p("policy", "")
        self.training = not policy
        self.num_demos = int(p("num_demos", 0))
        self.max_episodes = int(p("episodes", 0))
        self.on_lost = p("on_learner_lost", "hold")
        if self.on_lost not in ("hold", "keep"):
            raise ValueError(f"actor on_learner_lost={self.on_lost!r}: use hold (stop acting) or keep (last weights)")
        self.learner_timeout = float(p("learner_timeout_s", 2.0))
        self.max_ahead = int(p("max_steps_ahead", -1))
        self.outbox: deque[tuple[list[bytes], int]] = deque(maxlen=int(p("outbox_episodes", 100)))  # (chunks, episode)
        self.awaiting: tuple[str, int] | None = None  # (learner run_id, episode) last sent
        self.active = bool(p("start_active", False))
        deterministic = bool(p("deterministic", not self.training))

        self.core = RemoteActor(cfg, self.actor_id, deterministic=deterministic, policy_run=policy or None)
        self.learner_status: dict | None = None
        self.learner_seen = 0.0  # monotonic time of the last heartbeat
        self.successes: deque[bool] = deque(maxlen=20)
        self.state = "inactive"
        self.dropped = 0
        self.sent_demos = 0
        self.running = True

        self.pub_transitions = self.create_publisher(UInt8MultiArray, contract.join(ns, contract.TRANSITIONS.name),
                                                     contract.qos("stream"))
        self.rejects = RejectCounter(lambda text: self.get_logger().warning(text))
        self.create_subscription(UInt8MultiArray, contract.join(ns, contract.POLICY_WEIGHTS.name), self.on_weights,
                                 contract.qos("latched"))
        self.create_subscription(String, contract.join(ns, contract.LEARNER_STATUS.name), self.on_learner_status,
                                 contract.qos("command"))
        self.pub_status = self.create_publisher(String, contract.ACTOR_STATUS.name, contract.qos("command"))
        self.create_service(SetBool, contract.ACTIVATE.name, self.on_activate)
        self.create_timer(0.5, self.publish_status)
        self.String, self.Bytes = String, UInt8MultiArray
        self.thread = start_worker(self, self.control_loop, "actor_loop")
        self.get_logger().info(f"actor {self.actor_id}: {'training' if self.training else 'deploying ' + policy}, "
                               f"{'active' if self.active else 'inactive: call ~/activate true'}")

    # ------------------------------------------------------------------ ROS callbacks
    def on_weights(self, msg) -> None:
        """New weights from the learner; anything else on the topic is dropped and counted."""
        if not self.training:
            return
        try:
            self.core.offer_weights(bytes(msg.data))
        except (WireError, ValueError) as err:
            self.rejects.add("weights", f"dropped a weights payload: {err}")

    def on_learner_status(self, msg) -> None:
        """The learner's heartbeat; one that is not the learner's status JSON is dropped and counted."""
        try:
            status = json.loads(msg.data)
            if not (isinstance(status, dict) and isinstance(status.get("run_id"), str)
                    and isinstance(status.get("last_episode"), dict) and isinstance(status.get("backlog"), int)
                    and isinstance(status.get("demo_episodes", 0), int)
                    and all(isinstance(v, int) for v in status["last_episode"].values())):
                raise ValueError("missing run_id, last_episode, backlog or demo_episodes")
        except ValueError as err:
            self.rejects.add("learner_status", f"dropped a learner status message: {err}")
            return
        self.learner_status = status
        self.learner_seen = time.monotonic()

    def on_activate(self, request, response):
        self.active = bool(request.data)
        response.success, response.message = True, "active" if self.active else "inactive: holding"
        return response

    def publish_status(self) -> None:
        self.pub_status.publish(self.String(data=json.dumps({
            "actor": self.actor_id, "state": self.state, "active": self.active, "learner_ok": self.learner_ok(),
            "weights_version": self.core.weights_version, "episodes": self.core.episodes, "env_steps": self.core.steps,
            "outbox": len(self.outbox), "dropped_episodes": self.dropped, "rejected": self.rejects.counts(),
            "success_recent": sum(self.successes) / len(self.successes) if self.successes else 0.0})))

    # ------------------------------------------------------------------ the loop
    def learner_ok(self) -> bool:
        return (self.learner_status is not None and time.monotonic() - self.learner_seen < self.learner_timeout
                and self.pub_transitions.get_subscription_count() > 0)

    def keep_going(self) -> bool:
        if not (self.running and self.active):
            return False
        return not (self.training and self.on_lost == "hold" and not self.learner_ok())

    def wait_reason(self) -> str | None:
        """Why the next episode must wait (None: go)."""
        if not self.active:
            return "inactive"
        if self.max_episodes and self.core.episodes >= self.max_episodes:
            return "done"
        if not self.training:
            return None
        if self.learner_status is None:
            return "waiting for the learner"
        if not self.learner_ok():
            return "learner lost: holding" if self.on_lost == "hold" else None
        status = self.learner_status
        if self.max_ahead >= 0:
            run_id, episode = self.awaiting or (None, -1)
            received = run_id != status["run_id"] or status["last_episode"].get(self.actor_id, -1) >= episode
            if not received or int(status["backlog"]) > self.max_ahead:  # (a restarted learner lost what it had not committed)
                return "waiting for the learner to catch up"
        return None

    def flush(self) -> None:
        """Publish the kept episodes' chunks while the learner is there; with max_steps_ahead the next
        episode waits for the last one's commit."""
        while self.outbox and self.learner_ok():
            chunks, episode = self.outbox.popleft()
            self.awaiting = (self.learner_status["run_id"], episode)
            for chunk in chunks:
                msg = self.Bytes()
                msg.data = chunk  # bytes -> uint8[] without a Python loop
                self.pub_transitions.publish(msg)

    def control_loop(self) -> None:
        warned = None
        while self.running:
            self.flush()
            reason = self.wait_reason()
            self.state = reason or "acting"
            if reason is not None:
                if reason != warned:
                    self.get_logger().info(f"actor {self.actor_id}: {reason}")
                    warned = reason
                time.sleep(0.01)
                continue
            warned = None
            source = EpisodeSource.DEMO if self.wants_demo() else EpisodeSource.ONLINE
            try:
                outcome = self.core.run_episode(self.keep_going, source)
            except (RobotUnavailable, ResetError) as err:
                self.state = f"robot unavailable: {err}"
                self.get_logger().warning(f"actor {self.actor_id}: {err}", throttle_duration_sec=5.0)
                self.dropped += 1
                time.sleep(0.5)
                continue
            if outcome is None:
                self.dropped += 1
                continue
            chunks, result = outcome
            if source == EpisodeSource.ONLINE:
                self.successes.append(result.success)
            if not chunks or not self.training:
                continue
            if source == EpisodeSource.DEMO:
                self.sent_demos += 1
            self.outbox.append((chunks, self.core.episodes - 1))

    def wants_demo(self) -> bool:
        """Record a scripted demo: the learner holds (or has been sent) fewer than `num_demos`."""
        committed = self.learner_status.get("demo_episodes", 0) if self.learner_status else 0
        return self.training and max(committed, self.sent_demos) < self.num_demos

    def shutdown(self) -> None:
        self.running = False
        self.thread.join(timeout=5.0)
        self.core.close()


def main(args: list[str] | None = None) -> None:
    run_node(ActorNode, args)


if __name__ == "__main__":
    main()
