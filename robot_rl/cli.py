"""The `robot-rl` command: `robot-rl <command> [key=value ...]` with hydra config overrides. Parses,
dispatches to the command's module in robot_rl/commands/, prints one-line errors."""

from __future__ import annotations

import importlib
import os
import sys

from robot_rl.config import UserError, compose, config_dir, report_errors

USAGE = """usage: robot-rl <command> [key=value ...]

commands:
  train             train a policy (actor + learner in one process); resumes when run_dir holds a run
  train-reset-free  relocate's forward and backward agents, no reset between episodes (resets=free|every_episode)
  record-demos      demos into <out>/episodes.zarr: scripted in sim, or by hand (teleop=keyboard|console|...)
  eval              evaluate a run's latest checkpoint: robot-rl eval run_dir=<dir> episodes=50 [video=N]
  eval-batch        a run over a perturbation grid, batched MJX sim: robot-rl eval-batch run_dir=<dir> grid=<name>
  export            export a run's policy for deployment: robot-rl export run_dir=<dir> [format=onnx|torch]
  deploy            run an exported policy through the safety layer: robot-rl deploy policy=<file> robot=<...>
  record-labels     camera frames labelled success/failure into <out>/episodes.zarr (sim: ground truth)
  train-classifier  train a success classifier: robot-rl train-classifier data=<store> run_dir=<dir>
  check-log         check an episode log, every chunk: robot-rl check-log <store> (exit 0 intact, 1 damaged)
  salvage-log       copy a log's intact episodes to a new store: robot-rl salvage-log <store> out=<new store>
  calibrate         calibrate a serial arm (zero pose, directions, joint ranges): robot-rl calibrate robot=serial
  check-hardware    the firmware, servos, faults and link latency: robot-rl check-hardware robot=serial [clear=true]

any config key can be overridden, e.g. robot-rl train task=pick_cube agent.utd=8 seed=1
configs: {config_dir}
"""

# command -> its module in robot_rl/commands/
COMMANDS = {
    "train": "train",
    "train-reset-free": "train_reset_free",
    "record-demos": "record_demos",
    "eval": "evaluate",
    "eval-batch": "eval_batch",
    "export": "export",
    "deploy": "deploy",
    "record-labels": "record_labels",
    "train-classifier": "train_classifier",
    "check-log": "check_log",
    "salvage-log": "salvage_log",
    "calibrate": "calibrate",
    "check-hardware": "check_hardware",
}
TRAIN_EXTRA = ("torch", "matplotlib", "tensorboard", "onnx", "onnxscript")  # what the `train` extra installs
INTERRUPTED = "finished episodes are in the log, rerun to resume"


def run_configured(command: str, module, overrides: list[str]) -> int:
    """Compose the command's config from `overrides` and run it; errors a person can act on (and file
    system faults, named with their fix) print as one line."""
    from robot_rl.data.episode_log import EpisodeLogError
    from robot_rl.data.files import fs_error
    from robot_rl.robots.base import RobotUnavailable

    def work() -> int | None:
        try:
            status = module.run(compose(module.CONFIG, overrides))
            return status if isinstance(status, int) else None  # a command may return its exit status
        except OSError as err:  # the file system: disk full, read-only, permissions
            if isinstance(err, FileNotFoundError):
                raise
            raise fs_error(err, err.filename or ".", "accessing") from None

    return report_errors(
        f"robot-rl {command}:",
        work,
        (UserError, EpisodeLogError, ValueError, FileNotFoundError, RobotUnavailable),
        INTERRUPTED,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering on a headless machine; before mujoco loads
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE.format(config_dir=config_dir()))
        return 0
    command, args = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"robot-rl: unknown command '{command}': choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"robot_rl.commands.{COMMANDS[command]}")
        if module.CONFIG is None:  # positional arguments, e.g. check-log <store>
            return module.main(command, args)
        bad = [o for o in args if "=" not in o]
        if bad:
            print(f"robot-rl: '{bad[0]}' is not an override: write key=value (e.g. seed=1)", file=sys.stderr)
            return 2
        return run_configured(command, module, args)
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in TRAIN_EXTRA:
            raise
        print(
            f"robot-rl {command}: needs {err.name}, which this install lacks (an install for the robot computer "
            f'runs robot-rl deploy): pip install "robot_rl[train]"',
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
