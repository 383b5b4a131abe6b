"""The `robot-rl` command: `robot-rl <command> [key=value ...]` with hydra config overrides."""
from __future__ import annotations

import os
import sys
from pathlib import Path

USAGE = """usage: robot-rl <command> [key=value ...]

commands:
  train             train a policy (actor + learner in one process); resumes when run_dir holds a run
  record-demos      record scripted-expert demos in sim into <out>/episodes.zarr
  eval              evaluate a run's latest checkpoint: robot-rl eval run_dir=<dir> episodes=50
  record-labels     camera frames labelled success/failure into <out>/episodes.zarr (sim: ground truth)
  train-classifier  train a success classifier: robot-rl train-classifier data=<store> run_dir=<dir>
  check-log         check an episode log, every chunk: robot-rl check-log <store> (exit 0 intact, 1 damaged)
  salvage-log       copy a log's intact episodes to a new store: robot-rl salvage-log <store> out=<new store>

any config key can be overridden, e.g. robot-rl train task=pick_cube agent.utd=8 seed=1
configs: {config_dir}
"""

COMMANDS = {"train": "train", "record-demos": "record_demos", "eval": "eval", "record-labels": "record_labels",
            "train-classifier": "train_classifier"}
LOG_COMMANDS = ("check-log", "salvage-log")  # take a positional store path; code in robot_rl/data/log_check.py


def config_dir() -> Path:
    """The hydra config directory: $ROBOT_RL_CONFIG_DIR, else the repo's configs/."""
    return Path(os.environ.get("ROBOT_RL_CONFIG_DIR", Path(__file__).resolve().parents[1] / "configs"))


class UserError(Exception):
    """An error a person can act on; printed as one line."""


def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def compose(config_name: str, overrides: list[str]):
    """Compose a config with hydra's compose API (not @hydra.main, which clashes with --ros-args)."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    directory = config_dir()
    if not (directory / f"{config_name}.yaml").exists():
        raise UserError(f"config {directory / config_name}.yaml not found: set ROBOT_RL_CONFIG_DIR to the repo's configs/")
    try:
        with initialize_config_dir(config_dir=str(directory), version_base=None):
            return hydra_compose(config_name=config_name, overrides=overrides)
    except MissingConfigException as err:
        group = next((o.split("=", 1) for o in overrides if "=" in o and (directory / o.split("=", 1)[0]).is_dir()
                      and not (directory / o.split("=", 1)[0] / f"{o.split('=', 1)[1]}.yaml").exists()), None)
        if group:
            options = sorted(p.stem for p in (directory / group[0]).glob("*.yaml"))
            raise UserError(f"unknown {group[0]} '{group[1]}': choose one of {', '.join(options)}") from None
        raise UserError(one_line(err)) from None
    except (HydraException, OmegaConfBaseException) as err:
        if str(err).startswith("Could not override '"):
            key = str(err).split("'")[1]
            raise UserError(f"unknown config key '{key}': check its spelling in configs/ "
                            f"(or add a new key with +{key}=...)") from None
        cause = f" ({one_line(err.__cause__)})" if err.__cause__ else ""
        raise UserError(one_line(err) + cause) from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering on a headless machine; before mujoco loads
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE.format(config_dir=config_dir()))
        return 0
    command, overrides = argv[0], argv[1:]
    if command in LOG_COMMANDS:
        from robot_rl.data.log_check import main as log_main
        return log_main(command, overrides)
    if command not in COMMANDS:
        print(f"robot-rl: unknown command '{command}': choose one of {', '.join([*COMMANDS, *LOG_COMMANDS])}",
              file=sys.stderr)
        return 2
    bad = [o for o in overrides if "=" not in o]
    if bad:
        print(f"robot-rl: '{bad[0]}' is not an override: write key=value (e.g. seed=1)", file=sys.stderr)
        return 2
    from robot_rl.data.episode_log import EpisodeLogError
    try:
        cfg = compose(COMMANDS[command], overrides)
        if command == "train":
            from robot_rl.runtime.embedded import train
            train(cfg)
        elif command == "record-demos":
            from robot_rl.runtime.commands import record_demos
            record_demos(cfg)
        elif command == "record-labels":
            from robot_rl.reward.commands import record_labels
            record_labels(cfg)
        elif command == "train-classifier":
            from robot_rl.reward.commands import train_classifier
            train_classifier(cfg)
        else:
            from robot_rl.runtime.commands import evaluate_run
            evaluate_run(cfg)
    except (UserError, EpisodeLogError, ValueError, FileNotFoundError) as err:
        print(f"robot-rl {command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # the file system: disk full, read-only, permissions
        from robot_rl.data.files import fs_error
        print(f"robot-rl {command}: error: {one_line(fs_error(err, err.filename or '.', 'accessing'))}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"robot-rl {command}: interrupted; finished episodes are in the log, rerun to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
