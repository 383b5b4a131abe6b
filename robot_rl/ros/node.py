"""BackgroundNode: an rclpy node in its own context, spun on a daemon thread. How robot_rl objects that
live outside a ROS node (RosRobot, RosTeleopDevice, test probes) talk ROS 2. rclpy is imported here,
so import this module lazily."""

from __future__ import annotations

import threading

from robot_rl.ros.contract import require_rclpy


class BackgroundNode:
    """`node` is spun by `executor` on a daemon thread until `close()`."""

    def __init__(self, name: str, domain_id: int | None = None) -> None:
        rclpy = require_rclpy()
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        if domain_id is None:
            self.context.init()  # ROS_DOMAIN_ID from the environment
        else:
            self.context.init(domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, name=f"{name}_spin", daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def close(self) -> None:
        if self.context.ok():
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
            self.context.try_shutdown()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout=2.0)
