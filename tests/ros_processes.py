"""Test helpers: robot_rl ROS nodes as real processes, and a probe node that listens and calls services."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ros_ws" / "src" / "robot_rl_ros"


def ros_env(domain_id: int) -> dict[str, str]:
    """Environment for node processes: the package importable, an isolated DDS domain, headless GL."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("MUJOCO_GL", "egl")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Nodes:
    """Start node processes (logs under `log_dir`); `stop_all` kills whatever is left."""

    def __init__(self, domain_id: int, log_dir: Path) -> None:
        self.env = ros_env(domain_id)
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, module: str, *ros_args: str, namespace: str | None = None) -> subprocess.Popen:
        args = [sys.executable, "-m", f"robot_rl_ros.{module}", "--ros-args"]
        if namespace:
            args += ["-r", f"__ns:={namespace}"]
        for arg in ros_args:
            args += ["-p", arg]
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Probe:
    """An rclpy node in the test process: keeps the newest JSON of String topics and calls services."""

    def __init__(self, domain_id: int) -> None:
        from robot_rl.ros.node import BackgroundNode

        self.latest: dict[str, dict] = {}
        self.ros = BackgroundNode("test_probe", domain_id)
        self.node = self.ros.node

    def watch(self, topic: str, qos_kind: str = "command") -> None:
        from std_msgs.msg import String

        from robot_rl.ros import contract

        self.node.create_subscription(
            String, topic, lambda msg: self.latest.__setitem__(topic, json.loads(msg.data)), contract.qos(qos_kind)
        )

    def wait_for(self, topic: str, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.latest.get(topic)
            if value is not None and predicate(value):
                return value
            time.sleep(0.05)
        raise AssertionError(
            f"timed out after {timeout:.0f} s waiting for {what}; last {topic}: {self.latest.get(topic)}"
        )

    def call(self, srv_type, name: str, request, timeout: float = 20.0):
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), f"service {name} never appeared"
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        assert done.wait(timeout), f"service {name} did not answer"
        self.node.destroy_client(client)
        return future.result()

    def set_bool(self, name: str, value: bool):
        from std_srvs.srv import SetBool

        return self.call(SetBool, name, SetBool.Request(data=value))

    def trigger(self, name: str):
        from std_srvs.srv import Trigger

        return self.call(Trigger, name, Trigger.Request())

    def close(self) -> None:
        self.ros.close()


@contextmanager
def ros_session(domain_id: int, log_dir: Path, probe_class: type[Probe] = Probe):
    """(Nodes, probe) in DDS domain `domain_id`; this process's own rclpy contexts (RosRobot, ...) join it
    while the session lasts. Everything is stopped and ROS_DOMAIN_ID restored after."""
    saved = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    nodes, probe = Nodes(domain_id, log_dir), probe_class(domain_id)
    try:
        yield nodes, probe
    finally:
        probe.close()
        nodes.stop_all()
        if saved is None:
            os.environ.pop("ROS_DOMAIN_ID", None)
        else:
            os.environ["ROS_DOMAIN_ID"] = saved
