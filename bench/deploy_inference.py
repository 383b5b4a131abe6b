"""Deployed-policy latency on this machine: one observation in, one action out, for the state agent
(state 10, action 4, MLP [256, 256]) and the image agent (two 128x128 cameras + state 7, action 4, default
conv encoder): the exported ONNX policy in onnxruntime (`load_policy(...).act`, 1 intra-op thread), the
torch.export program (`.pt2`) and PyTorch (`agent.act(obs, deterministic=True)`, under inference_mode).

The three run in interleaved rounds on the same observation, so drift affects them alike; the figures
are median and p99 over all calls. Prints a table; the last line is one JSON object with, per agent
(state, image) and backend (onnx, pt2, torch), `<agent>_<backend>_ms_median` / `_ms_p99`, the ratios
`<agent>_torch_over_onnx` (median PyTorch / median onnxruntime), and the machine.
Usage: python bench/deploy_inference.py [--calls 20000] [--image-calls 1000] [--threads 1] [--rounds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import gymnasium as gym
import numpy as np
import torch

from robot_rl.agents.sac import SACAgent, SACConfig
from robot_rl.deploy.export import policy_bytes, sample_observations
from robot_rl.deploy.metadata import PolicyMetadata, observation_spec
from robot_rl.deploy.policy import policy_from_bytes

ACTION_DIM = 4
TARGET_STATE_ONNX_MS = 0.05  # the state policy's median in onnxruntime should stay below this


def space(agent_kind: str) -> gym.spaces.Dict:
    state = lambda d: gym.spaces.Box(-1.0, 1.0, shape=(d,), dtype=np.float32)
    if agent_kind == "state":
        return gym.spaces.Dict({"state": state(10)})
    image = gym.spaces.Box(0, 255, shape=(128, 128, 3), dtype=np.uint8)
    return gym.spaces.Dict({"image/front": image, "image/wrist": image, "state": state(7)})


def metadata(fmt: str, observation_space: gym.spaces.Dict) -> PolicyMetadata:
    return PolicyMetadata(
        format=fmt,
        task={"name": "bench", "config": {}},
        robot={"name": None, "model": None},
        observation=observation_spec(observation_space),
        action_dim=ACTION_DIM,
        action_low=[-1.0] * ACTION_DIM,
        action_high=[1.0] * ACTION_DIM,
        control_dt=0.1,
        safety={},
        source={},
        code={},
        exported_at="",
    )


def timed(fn, obs: dict, calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t = time.perf_counter_ns()
        fn(obs)
        out.append((time.perf_counter_ns() - t) / 1e6)
    return out


def measure(agent_kind: str, calls: int, rounds: int) -> dict[str, list[float]]:
    observation_space = space(agent_kind)
    agent = SACAgent(
        {k: (b.shape[0] if len(b.shape) == 1 else b.shape) for k, b in observation_space.spaces.items()},
        ACTION_DIM,
        SACConfig(compile=False),
        obs_bounds={k: (b.low, b.high) for k, b in observation_space.spaces.items() if len(b.shape) == 1},
    )
    examples = sample_observations(observation_space, 2)
    onnx = policy_from_bytes(policy_bytes(agent, metadata("onnx", observation_space), examples), "bench.onnx")
    pt2 = policy_from_bytes(policy_bytes(agent, metadata("torch", observation_space), examples), "bench.pt2")
    obs = {k: v[0] for k, v in sample_observations(observation_space, 1, seed=1).items()}
    reference = agent.act(obs, deterministic=True)
    assert np.abs(onnx.act(obs) - reference).max() < 1e-4 and np.abs(pt2.act(obs) - reference).max() < 1e-4
    backends = {
        "onnx": onnx.act,
        "pt2": pt2.act,
        "torch": lambda o: agent.act(o, deterministic=True),  # act() runs under torch.inference_mode
    }
    samples: dict[str, list[float]] = {name: [] for name in backends}
    for fn in backends.values():  # warm-up
        timed(fn, obs, max(calls // 20, 10))
    per_round = max(calls // rounds, 1)
    for _ in range(rounds):
        for name, fn in backends.items():
            samples[name] += timed(fn, obs, per_round)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per backend, state agent")
    parser.add_argument("--image-calls", type=int, default=1000, help="calls per backend, image agent")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (onnxruntime uses 1)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds over the backends")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"torch threads {args.threads}"
    )
    import onnxruntime

    machine += f", onnxruntime {onnxruntime.__version__}"
    result: dict = {}
    print(f"deployed policy inference, one observation ({machine})")
    print(f"{'agent':<8}{'backend':<36}{'median ms':>12}{'p99 ms':>12}")
    labels = {
        "onnx": "onnxruntime (load_policy .onnx)",
        "pt2": "torch.export program (.pt2)",
        "torch": "PyTorch agent.act",
    }
    for kind, calls in (("state", args.calls), ("image", args.image_calls)):
        samples = measure(kind, calls, args.rounds)
        for name, times in samples.items():
            median, p99 = float(np.median(times)), float(np.percentile(times, 99))
            result[f"{kind}_{name}_ms_median"] = round(median, 4)
            result[f"{kind}_{name}_ms_p99"] = round(p99, 4)
            print(f"{kind:<8}{labels[name]:<36}{median:>12.4f}{p99:>12.4f}")
        ratio = result[f"{kind}_torch_ms_median"] / result[f"{kind}_onnx_ms_median"]
        result[f"{kind}_torch_over_onnx"] = round(ratio, 2)
        print(f"{kind:<8}{'PyTorch / onnxruntime (median)':<36}{ratio:>12.2f}x")
    target = result["state_onnx_ms_median"] < TARGET_STATE_ONNX_MS
    print(f"state policy in onnxruntime below {TARGET_STATE_ONNX_MS} ms median: {'yes' if target else 'NO'}")
    result["state_onnx_below_target"] = target
    result["machine"] = machine
    print(json.dumps(result))


if __name__ == "__main__":
    main()
