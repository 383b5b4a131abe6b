"""Score a trained pick_cube (state) policy over a grid of perturbations in the batched MJX simulator.

A grid (configs/grid/<name>.yaml) names randomisation families (robot_rl/tasks/randomization.py; those a state task
feels: dynamics, obs_noise, action_noise, latency) and strengths. Each cell (family, strength) runs `episodes`
episodes, each with its own Perturbation drawn by `Randomization(**{family: strength}).sample(rng)` from a generator
of the cell, and the start states of episode k (seed + k) shared by every cell, so that cells differ only by their
perturbations. All the grid's episodes go through one BatchPickCube of `batch` envs (one compile), `batch` at a time;
the policy acts deterministically on the whole batch at once.

Writes `<out>/eval_batch.json` (every cell: family, strength, episodes, successes, success_rate, mean_return,
mean_length) and `<out>/heatmap.png` (success rate, rows families, columns strengths).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from omegaconf import DictConfig

from robot_rl.config import UserError, config_dir
from robot_rl.data.files import write_atomic
from robot_rl.tasks.randomization import Perturbation, Randomization

STATE_FAMILIES = ("dynamics", "obs_noise", "action_noise", "latency")  # what a state task feels
RESULT = "eval_batch.json"
HEATMAP = "heatmap.png"

BatchPolicy = Callable[[np.ndarray], np.ndarray]  # obs float32[B, 10] -> actions float32[B, 4]


@dataclass(frozen=True)
class Grid:
    """Families (rows) and strengths (columns) of a perturbation grid."""

    name: str
    families: tuple[str, ...]
    strengths: tuple[float, ...]


def parse_grid(raw: Mapping, where: str) -> Grid:
    """A Grid from a grid config (`name`, `families`, `strengths`); a one-line UserError for a bad entry."""
    families = tuple(raw.get("families") or ())
    strengths = raw.get("strengths") or ()
    bad = [f for f in families if f not in STATE_FAMILIES]
    if not families or bad:
        why = f"{bad} are not" if bad else "no families are"
        raise UserError(f"grid {where}: {why} randomisation families of a state task: use {', '.join(STATE_FAMILIES)}")
    try:
        values = tuple(float(s) for s in strengths)
    except (TypeError, ValueError):
        raise UserError(f"grid {where}: strengths {list(strengths)!r} must be numbers in 0..5") from None
    if not values or not all(math.isfinite(s) and 0 <= s <= 5 for s in values):
        raise UserError(f"grid {where}: strengths {list(strengths)} must be a list of numbers in 0..5")
    return Grid(str(raw.get("name") or where), families, values)


def load_grid(name: str) -> Grid:
    """configs/grid/<name>.yaml; a one-line UserError for an unknown grid or a bad entry."""
    directory = config_dir() / "grid"
    path = directory / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        raise UserError(f"grid={name} is not a grid in {directory}: use one of {', '.join(known)}")
    return parse_grid({"name": name, **(yaml.safe_load(path.read_text()) or {})}, str(path))


def sim_kwargs(run_cfg: DictConfig) -> dict:
    """BatchPickCube's keyword arguments for a run's task and robot; a one-line UserError for what the batched sim
    does not model (another task, 6-DoF actions, another arm, dense reward, custom areas)."""
    task, robot = run_cfg.task, run_cfg.robot
    problems = []
    if task.get("name") != "pick_cube":
        problems.append(f"task {task.get('name')} (only pick_cube, state)")
    if robot.get("name") != "mujoco" or robot.get("model", "panda") != "panda":
        problems.append(f"robot {robot.get('name')}/{robot.get('model')} (only the simulated panda)")
    if task.get("rotation"):
        problems.append("task.rotation=true (4-dim actions only)")
    if task.get("reward", "sparse") != "sparse" or task.get("gripper_mode", "sticky") != "sticky":
        problems.append("a dense reward or continuous gripper (sparse and sticky only)")
    for key in ("cube_x_range", "cube_y_range", "start_tcp", "cube_half_size"):
        if task.get(key) is not None:
            problems.append(f"task.{key} set")
    if robot.get("workspace") is not None or task.get("cube_yaw_range", 0.0):
        problems.append("a custom workspace or cube yaw")
    if problems:
        raise UserError(f"eval-batch cannot model this run: {'; '.join(problems)}: use robot-rl eval instead")
    return {
        "max_steps": int(task.max_steps),
        "action_scale": float(task.action_scale),
        "start_noise": float(task.start_noise),
        "lift_height": None if task.get("lift_height") is None else float(task.lift_height),
        "gripper_threshold": float(task.gripper_threshold),
        "n_chunks": int(robot.get("n_chunks", 5)),
        "reanchor_dist": float(robot.get("reanchor_dist", 0.04)),
        "control_dt": float(robot.get("control_dt", 0.1)),
    }


def checkpoint_policy(run_dir: Path) -> BatchPolicy:
    """The run's latest checkpoint as a batched deterministic policy (torch, CPU)."""
    import torch

    from robot_rl.envs.factory import make_env
    from robot_rl.runtime.trained import load_trained, trained_run_config

    run_cfg = trained_run_config(run_dir)
    torch.set_num_threads(int(run_cfg.runtime.torch_threads))
    env = make_env(run_cfg)  # the spaces the agent was built for
    try:
        agent = load_trained(run_dir, env, "cpu").agent
    finally:
        env.close()

    @torch.inference_mode()
    def act(obs: np.ndarray) -> np.ndarray:
        features = agent.encode({"state": torch.from_numpy(np.array(obs, dtype=np.float32))})  # a writable copy
        mean, _ = agent.actor(features)
        action = torch.tanh(mean)
        if agent.grasp:
            from robot_rl.agents.grasp import class_to_gripper

            action = torch.cat([action, class_to_gripper(agent.grasp_critic(features).argmax(-1))[:, None]], -1)
        return action.numpy().astype(np.float32)

    return act


def exported_policy(path: Path) -> BatchPolicy:
    """An exported policy (robot-rl export: .onnx or .pt2) as a batched policy."""
    from robot_rl.deploy.policy import load_policy

    policy = load_policy(path)
    return lambda obs: np.asarray(policy.act_batch({"state": obs}), dtype=np.float32)


def run_episodes(
    sim, policy: BatchPolicy, seeds: list[int], perturbations: list[Perturbation]
) -> dict[str, np.ndarray]:
    """One episode per (seed, perturbation) in batches of `sim.batch_size` (the last one padded); per episode:
    success, return and length."""
    n, b = len(seeds), sim.batch_size
    success, ret, length = np.zeros(n, bool), np.zeros(n), np.zeros(n, int)
    for start in range(0, n, b):
        idx = np.arange(start, min(start + b, n))
        pad = np.concatenate([idx, np.full(b - len(idx), idx[-1])])
        obs = sim.reset(seeds=[seeds[i] for i in pad], perturbations=[perturbations[i] for i in pad])
        got_success, got_ret, got_len = np.zeros(b, bool), np.zeros(b), np.zeros(b, int)
        for _ in range(sim.max_steps):
            live = ~sim.done
            if not live.any():
                break
            obs, reward, _, _, succ = sim.step(policy(obs))
            got_ret += reward
            got_len += live
            got_success |= succ
        k = len(idx)
        success[idx], ret[idx], length[idx] = got_success[:k], got_ret[:k], got_len[:k]
    return {"success": success, "return": ret, "length": length}


def evaluate_grid(
    run_dir: Path,
    grid: Grid,
    episodes: int,
    batch: int,
    device: str = "cpu",
    seed: int = 12345,
    policy_path: Path | None = None,
    policy: BatchPolicy | None = None,
) -> dict:
    """Every cell of `grid` over `episodes` episodes (see the module docstring); the result dict of eval_batch.json."""
    from robot_rl.runtime.trained import trained_run_config
    from robot_rl.sim_batch import BatchPickCube

    run_cfg = trained_run_config(run_dir)
    kwargs = sim_kwargs(run_cfg)
    if policy is None:
        policy = exported_policy(policy_path) if policy_path is not None else checkpoint_policy(run_dir)
    seeds, perts, cells = [], [], []
    for fi, family in enumerate(grid.families):
        for si, strength in enumerate(grid.strengths):
            rng = np.random.default_rng([seed, fi, si])
            randomization = Randomization(**{family: strength})
            cells.append((family, strength, len(seeds)))
            for k in range(episodes):
                seeds.append(seed + k)
                perts.append(randomization.sample(rng))
    t0 = time.perf_counter()
    sim = BatchPickCube(min(batch, len(seeds)), device=device, **kwargs)
    out = run_episodes(sim, policy, seeds, perts)
    seconds = time.perf_counter() - t0
    rows = []
    for family, strength, first in cells:
        sl = slice(first, first + episodes)
        rows.append(
            {
                "family": family,
                "strength": strength,
                "episodes": episodes,
                "successes": int(out["success"][sl].sum()),
                "success_rate": float(out["success"][sl].mean()),
                "mean_return": float(out["return"][sl].mean()),
                "mean_length": float(out["length"][sl].mean()),
            }
        )
    return {
        "command": "eval-batch",
        "run_dir": str(run_dir),
        "policy": str(policy_path) if policy_path is not None else "checkpoint",
        "grid": grid.name,
        "families": list(grid.families),
        "strengths": list(grid.strengths),
        "episodes_per_cell": episodes,
        "batch": sim.batch_size,
        "device": device,
        "seed": seed,
        "seconds": seconds,
        "cells": rows,
    }


def write_heatmap(result: dict, path: Path) -> None:
    """Success rate per cell as an annotated heat map (rows families, columns strengths)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families, strengths = result["families"], result["strengths"]
    rate = np.full((len(families), len(strengths)), np.nan)
    for cell in result["cells"]:
        rate[families.index(cell["family"]), strengths.index(cell["strength"])] = cell["success_rate"]
    fig, ax = plt.subplots(figsize=(1.3 * len(strengths) + 2.5, 0.7 * len(families) + 1.8), dpi=100)
    image = ax.imshow(rate, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(len(families)):
        for j in range(len(strengths)):
            ax.text(j, i, f"{rate[i, j]:.0%}", ha="center", va="center", color="black", fontsize=10)
    ax.set_xticks(range(len(strengths)), [f"{s:g}" for s in strengths])
    ax.set_yticks(range(len(families)), families)
    ax.set_xlabel("strength")
    ax.set_title(f"success rate, {result['episodes_per_cell']} episodes per cell ({Path(result['run_dir']).name})")
    fig.colorbar(image, ax=ax, fraction=0.05)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def write_results(result: dict, out: Path) -> tuple[Path, Path]:
    """`<out>/eval_batch.json` and `<out>/heatmap.png`."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / RESULT, json.dumps(result, indent=2))
    write_heatmap(result, out / HEATMAP)
    return out / RESULT, out / HEATMAP
