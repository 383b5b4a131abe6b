"""`robot-rl train-reset-free`: the relocate pair, forward and backward agents undoing each other's work."""

from __future__ import annotations

from omegaconf import DictConfig

CONFIG = "train_reset_free"


def run(cfg: DictConfig) -> None:
    """Train as `cfg` (configs/train_reset_free.yaml) says; the loop lives in robot_rl/runtime/reset_free.py."""
    from robot_rl.runtime.reset_free import train_reset_free

    train_reset_free(cfg)
