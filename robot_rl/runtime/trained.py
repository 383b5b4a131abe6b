"""A trained run read back: its resolved config and a learner restored from its latest checkpoint
(used by `robot-rl eval`, the remote actor's fixed policy and the label recorder's policy episodes)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from robot_rl.agents.sac import agent_config
from robot_rl.runtime.finetune import WARM_STARTS
from robot_rl.runtime.learner import Learner
from robot_rl.runtime.run import CHECKPOINT


def trained_run_config(run_dir: Path) -> DictConfig:
    """The resolved config of a `robot-rl train` run; a one-line error when `run_dir` holds none."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT).exists() or not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(
            f"{run_dir} holds no trained run ({CHECKPOINT} or config.yaml missing): "
            f"pass the run_dir given to `robot-rl train`"
        )
    return OmegaConf.load(run_dir / "config.yaml")


def load_trained(run_dir: Path, env, device: str = "cpu", seed: int = 0) -> Learner:
    """A learner (agent only, no replay) restored from a `robot-rl train` run's latest checkpoint."""
    run_cfg = trained_run_config(run_dir)
    agent_cfg = agent_config(run_cfg)
    agent_cfg.compile = False  # inference only
    learner = Learner(env.observation_space, env.action_space.shape[0], agent_cfg, capacity=1, device=device, seed=seed)
    # a fine-tuned run's agent scales inputs as its source did (runtime/finetune.py)
    warm_start = (run_cfg.get("finetune") or {}).get("mode") in WARM_STARTS
    learner.load(Path(run_dir) / CHECKPOINT, adopt_scaling=warm_start)
    return learner
