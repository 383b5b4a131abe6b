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

from rclpy.node import Node

from robot_rl.robots.ros import RobotUnavailable
from robot_rl.ros import contract
from robot_rl.runtime.wire import RejectCounter, WireError
from robot_rl.tasks.reset import ResetError
from robot_rl_ros.common import node_config, run_node, start_worker


class ActorNode(Node):
    """Translates topics to robot_rl.runtime.remote_actor.RemoteActor calls (which holds the pacing)."""

    def __init__(self) -> None:
        super().__init__("actor")
        from std_msgs.msg import String, UInt8MultiArray
        from std_srvs.srv import SetBool

        from robot_rl.runtime.remote_actor import Pacing, RemoteActor

        cfg = node_config(self)
        p = lambda name, default: self.declare_parameter(name, default).value  # noqa: E731
        ns = p("training_namespace", contract.DEFAULT_TRAINING_NAMESPACE)
        self.actor_id = p("actor_id", "") or self.get_fully_qualified_name()
        policy = p("policy", "")
        pacing = Pacing(
            training=not policy,
            num_demos=int(p("num_demos", 0)),
            max_episodes=int(p("episodes", 0)),
            on_learner_lost=p("on_learner_lost", "hold"),
            learner_timeout_s=float(p("learner_timeout_s", 2.0)),
            max_steps_ahead=int(p("max_steps_ahead", -1)),
            outbox_episodes=int(p("outbox_episodes", 100)),
        )
        start_active = bool(p("start_active", False))
        deterministic = bool(p("deterministic", not pacing.training))

        self.pub_transitions = self.create_publisher(
            UInt8MultiArray, contract.join(ns, contract.TRANSITIONS.name), contract.qos("stream")
        )
        self.core = RemoteActor(
            cfg,
            self.actor_id,
            deterministic=deterministic,
            policy_run=policy or None,
            pacing=pacing,
            link_ok=lambda: self.pub_transitions.get_subscription_count() > 0,
        )
        self.core.active = start_active
        self.training = pacing.training
        self.state = "inactive"
        self.rejects = RejectCounter(lambda text: self.get_logger().warning(text))
        self.create_subscription(
            UInt8MultiArray, contract.join(ns, contract.POLICY_WEIGHTS.name), self.on_weights, contract.qos("latched")
        )
        self.create_subscription(
            String, contract.join(ns, contract.LEARNER_STATUS.name), self.on_learner_status, contract.qos("command")
        )
        self.pub_status = self.create_publisher(String, contract.ACTOR_STATUS.name, contract.qos("command"))
        self.create_service(SetBool, contract.ACTIVATE.name, self.on_activate)
        self.create_timer(0.2, self.publish_status)  # 5 Hz: the console shows the episode's step from it
        self.String, self.Bytes = String, UInt8MultiArray
        self.thread = start_worker(self, self.control_loop, "actor_loop")
        self.get_logger().info(
            f"actor {self.actor_id}: {'training' if self.training else 'deploying ' + policy}, "
            f"{'active' if start_active else 'inactive: call ~/activate true'}"
        )

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
            self.core.offer_learner_status(json.loads(msg.data))
        except ValueError as err:
            self.rejects.add("learner_status", f"dropped a learner status message: {err}")

    def on_activate(self, request, response):
        self.core.active = bool(request.data)
        response.success, response.message = True, "active" if self.core.active else "inactive: holding"
        return response

    def publish_status(self) -> None:
        self.pub_status.publish(
            self.String(data=json.dumps({**self.core.status(self.state), "rejected": self.rejects.counts()}))
        )

    # ------------------------------------------------------------------ the loop
    def flush(self) -> None:
        for chunk in self.core.outgoing():
            msg = self.Bytes()
            msg.data = chunk  # bytes -> uint8[] without a Python loop
            self.pub_transitions.publish(msg)

    def control_loop(self) -> None:
        warned = None
        while self.core.running:
            self.flush()
            reason = self.core.wait_reason()
            self.state = reason or "acting"
            if reason is not None:
                if reason != warned:
                    self.get_logger().info(f"actor {self.actor_id}: {reason}")
                    warned = reason
                time.sleep(0.01)
                continue
            warned = None
            try:
                self.core.play()
            except (RobotUnavailable, ResetError) as err:
                self.state = f"robot unavailable: {err}"
                self.get_logger().warning(f"actor {self.actor_id}: {err}", throttle_duration_sec=5.0)
                self.core.dropped += 1
                time.sleep(0.5)

    def shutdown(self) -> None:
        self.core.running = False
        self.thread.join(timeout=5.0)
        self.core.close()


def main(args: list[str] | None = None) -> None:
    run_node(ActorNode, args)


if __name__ == "__main__":
    main()
