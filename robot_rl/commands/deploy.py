"""`robot-rl deploy policy=<file> robot=<mujoco|serial|ros> episodes=N`: an exported policy on a robot,
through the safety layer (robot_rl/deploy/runner.py). Runs without torch (the `deploy` extra)."""

from __future__ import annotations

from omegaconf import DictConfig

from robot_rl.deploy.runner import deploy

CONFIG = "deploy"


def run(cfg: DictConfig) -> int:
    summary = deploy(cfg)
    return 1 if summary["faults"] or (summary["stopped"] and not summary["episodes"]) else 0
