"""Transition schema and the zarr episode log (replay buffers live here too)."""

from robot_rl.data.episode_log import (
    STORE_NAME,
    EpisodeLog,
    EpisodeLogError,
    EpisodeLogWriter,
    parse_obs_spec,
)
from robot_rl.data.schema import EpisodeSource, Observation, RewardSource, Transition

__all__ = [
    "STORE_NAME",
    "EpisodeLog",
    "EpisodeLogError",
    "EpisodeLogWriter",
    "EpisodeSource",
    "Observation",
    "RewardSource",
    "Transition",
    "parse_obs_spec",
]
