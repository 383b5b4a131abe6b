"""What every robot_rl node shares: its hydra config from parameters, list parameters, and `run_node`."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from omegaconf import DictConfig


def string_list(node, name: str) -> list[str]:
    """A string-array parameter; [] when not given (ROS cannot infer a type from an empty default)."""
    from rclpy.exceptions import ParameterUninitializedException
    from rclpy.parameter import Parameter

    node.declare_parameter(name, Parameter.Type.STRING_ARRAY)
    try:
        return list(node.get_parameter(name).value)
    except ParameterUninitializedException:
        return []


def node_config(node, config_name: str = "train") -> DictConfig:
    """The node's robot_rl config: `configs/<config_name>.yaml` composed with the `overrides`
    parameter (hydra key=value strings, e.g. ['task=pick_cube', 'agent.utd=8'])."""
    from robot_rl.config import compose

    return compose(config_name, string_list(node, "overrides"))


def start_worker(node, loop: Callable[[], None], name: str) -> threading.Thread:
    """Run `loop` on a daemon thread beside the node's executor. If it raises while the node is up,
    the error is kept in `node.worker_error` and the node shuts down, so that `run_node` reports it."""

    def run() -> None:
        try:
            loop()
        except Exception as err:
            if node.context.ok():  # not just the node shutting down under us
                node.worker_error = err
                node.context.try_shutdown()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def run_node(make: Callable[[], object], args: list[str] | None = None) -> None:
    """rclpy.init, build the node with `make`, spin until SIGINT/SIGTERM, clean up. A config or
    device error (in the node or its worker thread) ends the process with its one-line message
    (exit status 2)."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from robot_rl.config import UserError, print_error

    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    try:
        node = make()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            executor.spin()
        except ExternalShutdownException:
            pass
        if getattr(node, "worker_error", None) is not None:
            raise node.worker_error
    except KeyboardInterrupt:
        pass
    except (UserError, ValueError, TypeError, ImportError, FileNotFoundError, RuntimeError) as err:
        print_error(f"[{getattr(node, 'get_name', lambda: 'robot_rl node')()}]", err)
        sys.exit(2)
    finally:
        if node is not None:
            shutdown = getattr(node, "shutdown", None)
            if shutdown is not None:
                shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
