"""reward_classifier: a trained success classifier watching a robot's cameras (monitoring; the actor
scores its own observations with `reward.classifier`).

Subscribes to `<robot_namespace>/image/<camera>` for every camera the classifier was trained on, and
for each complete set of frames with one header stamp (the bridge stamps one observation's frames
alike) publishes the success probability (std_msgs/Float32) on `<robot_namespace>/success_probability`.
Sets older than the newest scored one are dropped. A missing or unreadable classifier, or frames of
another size than it was trained on, end the node with a one-line error (status 2).

Parameters: classifier (path to classifier.pt, required), robot_namespace (default /robot),
reliable_sensors (subscribe reliably, for a lock-stepped bridge; default false), device (cpu | cuda).
"""

from __future__ import annotations

from rclpy.node import Node

from robot_rl.ros import contract
from robot_rl.ros.frames import StampedSets, image_to_array, stamp_seconds
from robot_rl_ros.common import run_node


class RewardClassifier(Node):
    def __init__(self) -> None:
        super().__init__("reward_classifier")
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float32

        from robot_rl.reward.model import SuccessClassifier

        self.Float32 = Float32
        path = str(self.declare_parameter("classifier", "").value)
        namespace = str(self.declare_parameter("robot_namespace", contract.DEFAULT_ROBOT_NAMESPACE).value)
        reliable = bool(self.declare_parameter("reliable_sensors", False).value)
        device = str(self.declare_parameter("device", "cpu").value)
        if not path:
            raise ValueError(
                "reward_classifier needs -p classifier:=<path to classifier.pt> (from `robot-rl train-classifier`)"
            )
        self.classifier = SuccessClassifier.load(path, device=device)
        prefix = contract.IMAGE.name.split("{", 1)[0]  # "image/": the classifier's keys are the topic names
        self.keys = self.classifier.image_keys
        bad = [k for k in self.keys if not k.startswith(prefix)]
        if bad:
            raise ValueError(f"classifier {path} reads {bad}, not camera images ({prefix}<camera>)")
        self.sets = StampedSets(self.keys)  # frames by stamp until every camera's arrived
        self.scored = 0
        sensor = contract.qos(contract.IMAGE.qos, reliable)
        for key in self.keys:
            self.create_subscription(
                Image, contract.join(namespace, key), lambda msg, key=key: self.on_image(key, msg), sensor
            )
        self.topic = contract.join(namespace, contract.SUCCESS_PROBABILITY.name)
        self.pub = self.create_publisher(Float32, self.topic, contract.qos(contract.SUCCESS_PROBABILITY.qos))
        self.get_logger().info(f"{path}: {', '.join(contract.join(namespace, k) for k in self.keys)} -> {self.topic}")

    def on_image(self, key: str, msg) -> None:
        stamp = stamp_seconds(msg.header.stamp)
        if self.sets.stale(stamp):
            return  # older than what we scored
        image = image_to_array(msg)
        if image.shape != self.classifier.image_shapes[key]:
            h, w = self.classifier.image_shapes[key][:2]
            raise ValueError(
                f"{key} frames are {image.shape[0]}x{image.shape[1]}, the classifier was trained on "
                f"{h}x{w}: give the bridge task.image_size=[{h},{w}]"
            )
        frames = self.sets.add(key, stamp, image)
        if frames is None:
            return
        probability = self.classifier.probability(frames)
        self.pub.publish(self.Float32(data=probability))
        self.scored += 1


def main(args: list[str] | None = None) -> None:
    run_node(RewardClassifier, args)


if __name__ == "__main__":
    main()
