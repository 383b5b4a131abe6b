"""Configuration and what a person sees when it is wrong: composing hydra configs, the typed config
groups, `UserError` with the one-line error printer, and the progress logger.

Imported by the commands, the runtime, `reward/` and the ROS nodes (which compose configs with hydra's
compose API, not `@hydra.main`, which clashes with `--ros-args`). Module import needs only omegaconf:
torch and hydra are imported where they are used.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

# ---- errors a person can act on ----------------------------------------------------------------------


class UserError(Exception):
    """An error a person can act on; printed as one line."""


def one_line(text: object) -> str:
    """`text` (an error or a string) on one line: its non-empty lines joined with '; '."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def print_error(who: str, err: BaseException | str) -> None:
    """Print `<who> error: <one line>` on stderr, e.g. `robot-rl train: error: ...` or `[learner] error: ...`."""
    print(f"{who} error: {one_line(err)}", file=sys.stderr, flush=True)


def report_errors(
    who: str, run: Callable[[], int | None], errors: tuple[type[BaseException], ...], interrupted: str | None = None
) -> int:
    """Run `run` and return its exit status (None counts as 0). An error of a type in `errors` is
    printed as one line (`print_error`) and returns 2. With `interrupted`, Ctrl-C prints
    `<who> interrupted; <interrupted>` and returns 130; without, KeyboardInterrupt propagates."""
    try:
        return run() or 0
    except errors as err:
        print_error(who, err)
        return 2
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        print(f"{who} interrupted; {interrupted}", file=sys.stderr, flush=True)
        return 130


# ---- the logger ----------------------------------------------------------------------------------------


def log(msg: str) -> None:
    """A progress or summary line on stdout, flushed at once (runs are watched live and piped to files)."""
    print(msg, flush=True)


# ---- composing configs ---------------------------------------------------------------------------------


def config_dir() -> Path:
    """The hydra config directory: $ROBOT_RL_CONFIG_DIR, else the repo's configs/."""
    return Path(os.environ.get("ROBOT_RL_CONFIG_DIR", Path(__file__).resolve().parents[1] / "configs"))


SWITCHES = ("console", "safety")  # groups with an `enabled` key that `<group>=true|false` turns on or off


def switch_overrides(overrides: list[str]) -> list[str]:
    """`console=true` -> `console.enabled=true` (hydra takes a group's value as the name of a file)."""
    out = []
    for o in overrides:
        key, _, value = o.partition("=")
        if key in SWITCHES and value.lower() in ("true", "false"):
            o = f"{key}.enabled={value.lower()}"
        out.append(o)
    return out


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose a config with hydra's compose API (not @hydra.main, which clashes with --ros-args)."""
    overrides = switch_overrides(overrides)
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException

    directory = config_dir()
    if not (directory / f"{config_name}.yaml").exists():
        raise UserError(
            f"config {directory / config_name}.yaml not found: set ROBOT_RL_CONFIG_DIR to the repo's configs/"
        )
    try:
        with initialize_config_dir(config_dir=str(directory), version_base=None):
            return hydra_compose(config_name=config_name, overrides=overrides)
    except MissingConfigException as err:
        group = next(
            (
                o.split("=", 1)
                for o in overrides
                if "=" in o
                and (directory / o.split("=", 1)[0]).is_dir()
                and not (directory / o.split("=", 1)[0] / f"{o.split('=', 1)[1]}.yaml").exists()
            ),
            None,
        )
        if group:
            options = sorted(p.stem for p in (directory / group[0]).glob("*.yaml"))
            raise UserError(f"unknown {group[0]} '{group[1]}': choose one of {', '.join(options)}") from None
        raise UserError(one_line(err)) from None
    except (HydraException, OmegaConfBaseException) as err:
        if str(err).startswith("Could not override '"):
            key = str(err).split("'")[1]
            raise UserError(
                f"unknown config key '{key}': check its spelling in configs/ (or add a new key with +{key}=...)"
            ) from None
        cause = f" ({one_line(err.__cause__)})" if err.__cause__ else ""
        raise UserError(one_line(err) + cause) from None


# ---- typed config groups -------------------------------------------------------------------------------


def typed(node: DictConfig, schema: type, name: str):
    """`node` checked against the dataclass `schema`: a one-line error names a bad key or value."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or ""
        reason = str(err).splitlines()[0]
        raise ValueError(f"bad value for {name}{'.' + key if key else ''}: {reason}") from None


@dataclass
class RuntimeConfig:
    """The `runtime` group, typed (see configs/runtime/embedded.yaml)."""

    torch_threads: int = 2
    replay_capacity: int = 1_000_000
    image_replay_capacity: int = 50_000  # per buffer, when observations hold images (~100 kB a step)
    learning_starts: int = 256
    random_steps: int = 0
    eval_every: int = 1000
    eval_episodes: int = 50
    checkpoint_every: int = 1000
    log_every: int = 500
    stop_at_success: float | None = None
    max_wall_s: float | None = None

    def __post_init__(self) -> None:
        for key in (
            "torch_threads",
            "replay_capacity",
            "image_replay_capacity",
            "eval_every",
            "eval_episodes",
            "checkpoint_every",
            "log_every",
        ):
            if getattr(self, key) < 1:
                raise ValueError(f"runtime.{key}={getattr(self, key)} must be at least 1: set a positive integer")
        for key in ("learning_starts", "random_steps"):
            if getattr(self, key) < 0:
                raise ValueError(f"runtime.{key}={getattr(self, key)} must be 0 or more")
        if self.stop_at_success is not None and not 0.0 <= self.stop_at_success <= 1.0:
            raise ValueError(
                f"runtime.stop_at_success={self.stop_at_success} must be a success rate in [0, 1] (or null)"
            )
        if self.max_wall_s is not None and self.max_wall_s < 0:
            raise ValueError(f"runtime.max_wall_s={self.max_wall_s} must be 0 or more seconds (or null)")


def check_device(device: str) -> None:
    """A one-line error for a device this torch cannot use (e.g. cuda on a CPU-only install)."""
    import torch

    try:
        kind = torch.device(str(device)).type
    except RuntimeError:
        raise ValueError(f"device={device!r} is not a torch device: use cpu or cuda") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device} but this torch sees no CUDA GPU (a CPU-only install, or no GPU visible): use device=cpu"
        )


def count_arg(cfg: DictConfig, key: str, least: int = 0) -> int:
    """The integer `cfg[key]`, at least `least`; a one-line error otherwise."""
    value = cfg[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ValueError(f"{key}={value!r} must be an integer >= {least}")
    return value
