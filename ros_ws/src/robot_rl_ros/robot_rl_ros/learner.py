"""learner: trains on the episodes any number of actors stream in; publishes weights and a heartbeat.

Episodes arrive on `<training_namespace>/transitions` and go to the zarr log (`run_dir/episodes.zarr`)
and the replay buffers; one learner update per online env step received (as the embedded runner);
checkpoints every `runtime.checkpoint_every` env steps; weights on `policy_weights` (reliable,
transient local: a late-joining actor gets the latest) at most every `weights_period_s`; status on
`learner_status` at 10 Hz and whenever it has caught up; the run's events (episode ends, labels, eval
rounds, learner stats; not per-step ones) as JSON on `events` (robot_rl.ros.events.RosEventSink). A
restart on the same run_dir resumes from its checkpoint and log. With `exit_when_done` it stops after
the config's `steps` online env steps, writing summary.json. The learning logic is robot_rl.runtime.remote_learner.

Whatever arrives on `transitions` is untrusted (anyone on the domain can publish): a payload over the
size limit or arriving while the inbox is full is dropped before it is copied; the rest is validated
by RemoteLearner, and every rejection is counted by kind in the heartbeat's `rejected` and logged at
most every 10 s per kind. No callback's exception stops the node.

Parameters: overrides (the train config, e.g. ['task=pick_cube', 'run_dir=runs/ros']),
training_namespace, weights_period_s, exit_when_done, max_inbox_mb (payloads received, not yet
decoded), max_pending_mb (episodes in progress, all actors).
"""

from __future__ import annotations

import json
import threading
import time

from rclpy.node import Node

from robot_rl.ros import contract
from robot_rl_ros.common import node_config, run_node, start_worker


class LearnerNode(Node):
    def __init__(self) -> None:
        super().__init__("learner")
        from std_msgs.msg import String, UInt8MultiArray

        from robot_rl.ros.events import RosEventSink
        from robot_rl.runtime.remote_learner import IngestLimits, RemoteLearner

        cfg = node_config(self)
        ns = self.declare_parameter("training_namespace", contract.DEFAULT_TRAINING_NAMESPACE).value
        self.weights_period = float(self.declare_parameter("weights_period_s", 0.5).value)
        self.exit_when_done = bool(self.declare_parameter("exit_when_done", True).value)
        defaults = IngestLimits()
        inbox_mb = int(self.declare_parameter("max_inbox_mb", defaults.inbox_bytes >> 20).value)
        pending_mb = int(self.declare_parameter("max_pending_mb", defaults.pending_bytes >> 20).value)
        if inbox_mb < 1 or pending_mb < 1:
            raise ValueError(f"learner max_inbox_mb={inbox_mb}, max_pending_mb={pending_mb}: give at least 1 MiB each")
        limits = IngestLimits(inbox_bytes=inbox_mb << 20, pending_bytes=pending_mb << 20)
        self.steps = int(cfg.steps)
        self.core = None
        # subscribe before building (seconds: the env, the agent, a resumed log): the stream QoS keeps
        # what actors send meanwhile in the reader, and it is taken once the node spins
        self.create_subscription(
            UInt8MultiArray, contract.join(ns, contract.TRANSITIONS.name), self.on_chunk, contract.qos("stream")
        )
        self.events = RosEventSink(self, ns)  # the run's events for the console (and any monitor)
        self.core = RemoteLearner(cfg, log=lambda msg: self.get_logger().info(msg), limits=limits, sinks=[self.events])
        self.String, self.Bytes = String, UInt8MultiArray
        self.pub_weights = self.create_publisher(
            UInt8MultiArray, contract.join(ns, contract.POLICY_WEIGHTS.name), contract.qos("latched")
        )
        self.pub_status = self.create_publisher(
            String, contract.join(ns, contract.LEARNER_STATUS.name), contract.qos("command")
        )
        self.create_timer(0.1, self.publish_status)
        self.running = True
        self.finished = False
        self.thread = start_worker(self, self.train_loop, "learner_loop")
        self.get_logger().info(f"learner on {ns}: run_dir {cfg.run_dir}, {self.steps} online env steps")

    def on_chunk(self, msg) -> None:
        """One transitions message: handed over as the message's own buffer (RemoteLearner.ingest drops
        an oversized one before copying it). Nothing raised here may stop the executor."""
        try:
            self.core.ingest(msg.data)
        except Exception as err:
            self.core.rejects.add("internal", f"[learner] dropped a message ({type(err).__name__}: {err}) (internal)")

    def publish_status(self) -> None:
        self.pub_status.publish(self.String(data=json.dumps(self.core.status())))

    def publish_weights(self) -> None:
        payload = self.core.weights()
        if payload is not None:
            msg = self.Bytes()
            msg.data = payload
            self.pub_weights.publish(msg)

    def train_loop(self) -> None:
        last_weights = last_log = 0.0
        while self.running:
            waiting = self.core.backlog > 0
            busy = self.core.work()
            now = time.monotonic()
            caught_up = waiting and self.core.backlog == 0  # tell pacing actors at once
            if caught_up or now - last_weights >= self.weights_period:
                self.publish_weights()
                last_weights = now
            if caught_up:
                self.publish_status()
            if now - last_log >= 10.0 and self.core.learner is not None:
                status = self.core.status()
                self.get_logger().info(
                    f"step {status['env_steps']}/{self.steps} | episodes {status['episodes']} | "
                    f"updates {status['updates']} | success(last 20) {status['success_recent']:.0%} "
                    f"| actors {status['actors']}"
                )
                last_log = now
            if (
                self.exit_when_done
                and self.core.learner is not None
                and self.core.backlog == 0
                and self.core.counts["env_steps"] >= self.steps
            ):
                summary = self.core.finish()
                self.finished = True
                self.publish_weights()
                self.get_logger().info(
                    f"done: {summary['env_steps']} env steps, {summary['critic_updates']} critic updates "
                    f"-> {self.core.run_dir / 'summary.json'}"
                )
                self.running = False
                self.context.try_shutdown()
                return
            if not busy:
                time.sleep(0.002)

    def shutdown(self) -> None:
        self.running = False
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=30.0)
        if not self.finished:
            self.core.finish()
        self.core.close()


def main(args: list[str] | None = None) -> None:
    run_node(LearnerNode, args)


if __name__ == "__main__":
    main()
