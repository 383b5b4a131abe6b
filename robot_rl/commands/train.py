"""`robot-rl train`: train a policy, actor and learner in one process; resumes when run_dir holds a run."""

from __future__ import annotations

from omegaconf import DictConfig

CONFIG = "train"


def run(cfg: DictConfig) -> None:
    """Train as configured by `cfg` (configs/train.yaml); the loop lives in robot_rl/runtime/embedded.py."""
    from robot_rl.runtime.embedded import train

    train(cfg)
