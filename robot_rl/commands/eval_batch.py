"""`robot-rl eval-batch`: score a run's policy over a grid of perturbations in the batched MJX simulator:
robot-rl eval-batch run_dir=<dir> grid=<name> [episodes=N] [batch=B] [device=cpu|cuda] [policy=<.onnx>] [out=<dir>]."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from robot_rl.config import UserError, count_arg, log

CONFIG = "eval_batch"


def run(cfg: DictConfig) -> dict:
    """Evaluate every grid cell and write `<out>/eval_batch.json` and `<out>/heatmap.png`."""
    episodes, batch, seed = count_arg(cfg, "episodes", 1), count_arg(cfg, "batch", 1), count_arg(cfg, "seed")
    if cfg.device not in ("cpu", "cuda"):
        raise UserError(f"device={cfg.device!r} is not a batched-sim device: use cpu or cuda")
    policy = Path(cfg.policy) if cfg.policy else None
    if policy is not None and not policy.is_file():
        raise UserError(f"policy={policy} is not a file: pass an exported policy (robot-rl export run_dir=...)")
    try:
        import jax  # noqa: F401
        from mujoco import mjx  # noqa: F401
    except ImportError:
        raise UserError('eval-batch needs jax and mujoco-mjx: pip install "robot_rl[jax]"') from None
    from robot_rl.deploy.eval_batch import evaluate_grid, parse_grid, write_results
    from robot_rl.runtime.trained import trained_run_config

    run_dir = Path(cfg.run_dir)
    trained_run_config(run_dir)  # a missing run fails before anything compiles
    grid = parse_grid(OmegaConf.to_container(cfg.grid, resolve=True), f"grid={cfg.grid.get('name')}")
    out = Path(cfg.out) if cfg.out else run_dir / "eval_batch"
    result = evaluate_grid(run_dir, grid, episodes, batch, str(cfg.device), seed, policy)
    json_path, png_path = write_results(result, out)
    cells = len(result["cells"])
    log(
        f"[eval-batch] {run_dir}: {cells} cells x {episodes} episodes in {result['seconds']:.1f} s "
        f"(batch {result['batch']}, {cfg.device}); nominal success "
        f"{result['cells'][0]['success_rate']:.0%} -> {json_path}, {png_path}"
    )
    return result
