"""`robot-rl export`: a run's deterministic policy as one file: robot-rl export run_dir=<dir> [format=onnx|torch]
[out=<file>]."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from robot_rl.config import UserError, log

CONFIG = "export"


def run(cfg: DictConfig) -> None:
    """Export `cfg.run_dir`'s latest checkpoint (configs/export.yaml); prints one summary line."""
    if OmegaConf.is_missing(cfg, "run_dir"):
        raise UserError("run_dir= is missing: robot-rl export run_dir=<the run_dir of robot-rl train>")
    from robot_rl.deploy.export import export_policy  # torch: imported once the arguments are known good

    result = export_policy(cfg.run_dir, str(cfg.format), cfg.out, cfg.check)
    meta = result.metadata
    source = meta.source
    log(
        f"[export] {cfg.run_dir} -> {result.path} ({meta.format}; {meta.describe()}; "
        f"{source['critic_updates']} critic updates; matches the checkpoint on {result.checked} observations, "
        f"max |diff| {result.max_abs_diff:.1e})"
    )
