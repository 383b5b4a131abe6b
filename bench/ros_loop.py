"""ROS 2 loop benchmark: control period jitter and observation-to-command latency through real DDS
between processes, and actor -> learner transition / learner -> actor weight throughput.

Usage: python bench/ros_loop.py [--seconds 20] [--rates 10 50] [--out bench/results/ros_loop.json]

Control loop: a free-running sim bridge (real time, like hardware) and a deploy-mode actor with the
state policy of pick_cube, each its own process. The bridge's `stats` service reports the period of
its control timer (jitter = |period - control_dt|) and the time from publishing an observation to
receiving the command that answers it (the command's header stamp is that observation's stamp).
Throughput: a sender process publishes encoded episode chunks (robot_rl.runtime.wire) and weight
payloads on the contract's topics and QoS; this process receives and decodes them.
Prints a table; the last line is one JSON object (also written to --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from ros_processes import Probe, ros_session  # noqa: E402  (the same process harness the tests use)

DOMAIN = 90


def policy_run(tmp: Path, dt: float) -> Path:
    """A run directory with an (untrained) pick_cube state policy for control period `dt`: inference
    costs what a trained one's does."""
    run = tmp / f"policy_{dt}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "robot_rl.cli",
            "train",
            f"run_dir={run}",
            "steps=0",
            "num_demos=0",
            "runtime.eval_episodes=1",
            "agent.compile=false",
            f"robot.control_dt={dt}",
        ],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    return run


def control_loop(rate: int, seconds: float, tmp: Path) -> dict:
    run = policy_run(tmp, 1.0 / rate)
    ns = f"/bench{rate}"
    with ros_session(DOMAIN, tmp) as (nodes, probe):
        dt = 1.0 / rate
        nodes.start(
            f"bridge{rate}",
            "bridge",
            "mode:=free",
            "start_armed:=true",
            f"overrides:=[robot.control_dt={dt}]",
            namespace=ns,
        )
        nodes.start(
            f"actor{rate}",
            "actor",
            f"overrides:=[robot=ros, robot.namespace={ns}]",
            f"policy:={run}",
            "start_active:=true",
            namespace=ns,
        )
        probe.watch(f"{ns}/actor/status")
        probe.wait_for(
            f"{ns}/actor/status",
            lambda s: s["env_steps"] > 0 or s["episodes"] > 0 or s["state"] == "acting",
            120,
            "the actor to act",
        )
        time.sleep(2.0)  # past start-up
        probe.trigger(f"{ns}/stats")  # warm the service
        start = json.loads(probe.trigger(f"{ns}/stats").message)
        time.sleep(seconds)
        stats = json.loads(probe.trigger(f"{ns}/stats").message)
        stats["applied_during"] = stats["applied"] - start["applied"]
        stats["held_during"] = stats["held"] - start["held"]
        stats["rejected_stale_during"] = stats["rejected_stale"] - start["rejected_stale"]
        return stats


def sender(kind: str, count: int) -> None:
    """Child process: publish `count` payloads of `kind` (state | image | weights)."""
    import rclpy
    from std_msgs.msg import UInt8MultiArray

    from robot_rl.ros import contract
    from robot_rl.runtime.wire import encode_weights

    rclpy.init()
    node = rclpy.create_node(f"bench_sender_{kind}")
    endpoint = contract.POLICY_WEIGHTS if kind == "weights" else contract.TRANSITIONS
    pub = node.create_publisher(
        UInt8MultiArray,
        contract.join("/bench", endpoint.name),
        contract.qos("command" if kind == "weights" else "stream"),
    )
    if kind == "weights":
        from robot_rl.agents.sac import SACAgent, SACConfig

        payload = encode_weights(SACAgent({"state": 10}, 4, SACConfig(compile=False)).policy_weights(), 1)
    else:
        payload = chunk_payload(kind)
    while pub.get_subscription_count() == 0:
        time.sleep(0.01)
    time.sleep(0.5)
    msg = UInt8MultiArray()
    msg.data = payload
    for _ in range(count):
        pub.publish(msg)
        if kind == "weights":
            time.sleep(0.001)
    time.sleep(2.0)
    node.destroy_node()
    rclpy.shutdown()


def chunk_payload(kind: str, steps: int = 50) -> bytes:
    from robot_rl.data.schema import Transition
    from robot_rl.runtime.wire import encode_chunk

    rng = np.random.default_rng(0)
    obs = lambda: {
        "state": rng.normal(size=10).astype(np.float32),
        # noqa: E731
        **(
            {f"image/{c}": rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for c in ("front", "wrist")}
            if kind == "image"
            else {}
        ),
    }
    frames = [obs() for _ in range(steps + 1)]
    transitions = [
        Transition(
            observation=frames[i],
            next_observation=frames[i + 1],
            action=np.zeros(4, np.float32),
            policy_action=np.zeros(4, np.float32),
            reward=0.0,
            terminated=False,
            truncated=False,
        )
        for i in range(steps)
    ]
    return encode_chunk(transitions, "bench", 0, 0, final=True)


def throughput(kind: str, count: int) -> dict:
    """Receive `count` payloads from a sender process; rates measured from the first to the last."""
    from std_msgs.msg import UInt8MultiArray

    from robot_rl.ros import contract
    from robot_rl.runtime.wire import decode_chunk, decode_weights

    probe = Probe(DOMAIN)
    times, sizes, steps = [], [], []
    done = threading.Event()
    endpoint = contract.POLICY_WEIGHTS if kind == "weights" else contract.TRANSITIONS

    def on_msg(msg) -> None:
        payload = msg.data.tobytes()
        if kind == "weights":
            decode_weights(payload)
        else:
            steps.append(len(decode_chunk(payload)[1]))
        times.append(time.perf_counter())
        sizes.append(len(payload))
        if len(times) >= count:
            done.set()

    probe.node.create_subscription(
        UInt8MultiArray,
        contract.join("/bench", endpoint.name),
        on_msg,
        contract.qos("command" if kind == "weights" else "stream"),
    )
    env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, __file__, "--send", kind, "--count", str(count)], env=env)
    try:
        done.wait(120)
    finally:
        proc.wait(timeout=60)
        probe.close()
    if len(times) < 2:
        return {"received": len(times)}
    span = times[-1] - times[0]
    result = {
        "received": len(times),
        "of": count,
        "lost": count - len(times),
        "payload_kB": round(sizes[0] / 1e3, 1),
        "messages_per_s": round((len(times) - 1) / span, 1),
        "MB_per_s": round(sum(sizes[1:]) / span / 1e6, 1),
    }
    if steps:
        result["transitions_per_s"] = round(sum(steps[1:]) / span, 0)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per control rate")
    parser.add_argument("--rates", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--out", default="bench/results/ros_loop.json")
    parser.add_argument("--send", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send:
        sender(args.send, args.count)
        return
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "control": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for rate in args.rates:
            results["control"][f"{rate}Hz"] = control_loop(rate, args.seconds, tmp)
    results["transitions_state"] = throughput("state", 200)
    results["transitions_image"] = throughput("image", 40)
    results["weights_state"] = throughput("weights", 200)

    print(f"{'measurement':<46} result")
    for rate, s in results["control"].items():
        print(
            f"{rate + ' control period jitter p50 / p99 (ms)':<46} "
            f"{s['jitter_ms']['p50']:.2f} / {s['jitter_ms']['p99']:.2f}"
        )
        print(
            f"{rate + ' observation->command p50 / p99 (ms)':<46} {s['obs_to_command_ms']['p50']:.2f} / "
            f"{s['obs_to_command_ms']['p99']:.2f}"
        )
        print(
            f"{rate + ' commands applied / held / stale':<46} {s['applied_during']} / {s['held_during']} / "
            f"{s['rejected_stale_during']}"
        )
    for key in ("transitions_state", "transitions_image", "weights_state"):
        r = results[key]
        extra = f", {r['transitions_per_s']:.0f} transitions/s" if "transitions_per_s" in r else ""
        print(
            f"{key:<46} {r.get('messages_per_s', 0)} msg/s, {r.get('MB_per_s', 0)} MB/s "
            f"({r.get('payload_kB', 0)} kB each){extra}, lost {r.get('lost', r.get('of', 0))} of {r.get('of')}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
