"""RosEventSink: a training run's events on `<training_namespace>/events` (contract EVENTS), for the web
console's ROS node and any other monitor. rclpy is imported when the sink is made.

Each event but the per-step ones (`StepEvent`: one per env step, and the console does not need them)
is one std_msgs/String holding `robot_rl.data.schema.event_to_json(event)` as JSON; `decode_event`
turns a message's text back into the event, checked (the topic is open to anyone on the domain)."""

from __future__ import annotations

import json

from robot_rl.data.schema import RunEvent, StepEvent, event_from_json, event_to_json
from robot_rl.ros import contract

MAX_EVENT_BYTES = 64 << 10  # a decoded message's largest text (events are a few hundred bytes)


class RosEventSink:
    """A Sink (robot_rl.runtime.sinks) publishing on `<namespace>/events` from `node` (an rclpy Node).
    `emit` may be called from any thread."""

    def __init__(self, node, namespace: str = contract.DEFAULT_TRAINING_NAMESPACE) -> None:
        contract.require_rclpy()
        from std_msgs.msg import String

        self.String = String
        self.topic = contract.join(namespace, contract.EVENTS.name)
        self.publisher = node.create_publisher(String, self.topic, contract.qos(contract.EVENTS.qos))
        self.published = 0

    def emit(self, event: RunEvent) -> None:
        if isinstance(event, StepEvent):
            return
        self.publisher.publish(self.String(data=json.dumps(event_to_json(event), allow_nan=False)))
        self.published += 1

    def close(self) -> None:
        pass


def decode_event(text: str) -> RunEvent:
    """An `events` message's text as its run event; ValueError (one line) when it is not one."""
    if len(text) > MAX_EVENT_BYTES:
        raise ValueError(f"an events message of {len(text)} characters (limit {MAX_EVENT_BYTES})")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"an events message that is not JSON ({err})") from None
    return event_from_json(data)
