"""The learner loop's state: the agent and its two replay buffers (demos/interventions and online)."""

from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces

from robot_rl.agents.sac import SACAgent, SACConfig
from robot_rl.data.files import write_atomic
from robot_rl.data.replay import ReplayBuffer, sample_symmetric
from robot_rl.data.schema import EpisodeLabel, EpisodeSource, Transition
from robot_rl.envs.intervention_reward import relabel_rows

PRIOR_SOURCES = {EpisodeSource.DEMO, EpisodeSource.INTERVENTION}
LOAD_BATCH_ROWS = 100_000  # log rows read at once when a state-only buffer is filled from a log


def obs_spec(space: spaces.Dict) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{key: (shape, dtype)} of a Dict observation space."""
    return {key: (tuple(box.shape), np.dtype(box.dtype)) for key, box in space.spaces.items()}


def agent_obs_dims(spec: dict[str, tuple[tuple[int, ...], np.dtype]]) -> dict[str, int | tuple[int, ...]]:
    """The agent's view of an observation spec: float vectors by length, uint8 [H, W, 3] images by
    shape; anything else is a one-line ValueError."""
    dims: dict[str, int | tuple[int, ...]] = {}
    for key, (shape, dtype) in spec.items():
        if len(shape) == 1 and np.issubdtype(dtype, np.floating):
            dims[key] = shape[0]
        elif len(shape) == 3 and shape[2] == 3 and dtype == np.uint8:
            dims[key] = shape
        else:
            raise ValueError(
                f"observation '{key}' {shape} {dtype} is neither a float vector nor a uint8 "
                "[H, W, 3] image: the agent takes only those (change the task's observation)"
            )
    return dims


def make_agent(
    observation_space: spaces.Dict, action_dim: int, config: SACConfig, device: str = "cpu", seed: int = 0
) -> SACAgent:
    """The SAC agent for an env's spaces; float vector observations are scaled by their Box bounds."""
    return SACAgent(
        agent_obs_dims(obs_spec(observation_space)),
        action_dim,
        config,
        device,
        seed,
        {key: (box.low, box.high) for key, box in observation_space.spaces.items() if len(box.shape) == 1},
    )


def load_weights(path: Path, device: str | torch.device = "cpu") -> dict:
    """A checkpoint's contents, unpickled with `weights_only=True` (tensors, numbers, strings and plain
    containers; anything that would construct another object or call a function is refused)."""
    try:
        with warnings.catch_warnings():  # a foreign pickle protocol warns before it is refused
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:  # what weights_only refuses: code, classes, foreign objects
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = next((line for line in lines if "unsupported" in line.lower()), lines[-1] if lines else "")[:120]
        raise ValueError(
            f"checkpoint {path} holds more than weights ({reason}): refused, nothing in it ran; "
            "use a checkpoint written by robot_rl, or delete it to restart the learner from the "
            "episode log"
        ) from None
    except Exception as err:  # a truncated or foreign file
        raise ValueError(
            f"checkpoint {path} cannot be read ({type(err).__name__}); "
            "delete it to restart the learner from the episode log"
        ) from None
    if not isinstance(state, dict) or "agent" not in state:
        raise ValueError(
            f"checkpoint {path} is not a robot_rl learner checkpoint (no agent state); "
            "pass the run_dir of `robot-rl train`"
        )
    return state


class Learner:
    """Owns the SAC agent and replay; `update()` runs `utd` critic updates and one actor update on a
    symmetric batch (half demos/interventions, half online)."""

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_dim: int,
        agent_config: SACConfig,
        capacity: int,
        device: str = "cpu",
        seed: int = 0,
        rlif: bool = False,
    ):
        """`rlif`: reward.source=interventions: rows loaded from a log (`load_log`, `load_offline`) get RLIF's
        relabelling (robot_rl/envs/intervention_reward.py); `add` takes transitions as they are (the run relabels
        whole episodes before)."""
        spec = obs_spec(observation_space)
        self.rlif = rlif
        self.agent = make_agent(observation_space, action_dim, agent_config, device, seed)
        self.prior = ReplayBuffer(spec, action_dim, capacity, device)
        self.online = ReplayBuffer(spec, action_dim, capacity, device)
        self.sample_generator = torch.Generator().manual_seed(seed + 1)

    def add(self, transition: Transition, source: EpisodeSource = EpisodeSource.ONLINE) -> None:
        """Demo/intervention-episode steps go to the prior buffer; online steps to the online buffer,
        and intervention steps of online episodes to both (HIL-SERL's routing)."""
        prior = source in PRIOR_SOURCES
        targets = [self.prior] if prior else [self.online] + ([self.prior] if transition.intervention else [])
        for buffer in targets:
            buffer.add(
                transition.observation,
                transition.action,
                transition.reward,
                transition.next_observation,
                transition.terminated,
                done=transition.terminated or transition.truncated,
                grasp_penalty=transition.grasp_penalty,
            )

    def load_log(self, log, online: bool = True, upto: int | None = None) -> None:
        """Fill the buffers from an episode log the way `add` routes steps: demo + intervention episodes
        -> prior; online episodes -> online (unless `online` is False) and their intervention steps
        -> prior as well. Episodes a person discarded are never loaded; with `upto`, only the first
        `upto` episodes of the log are."""
        if log.num_episodes == 0:
            return
        meta = log.episode_meta()
        kept = meta["label"] != EpisodeLabel.DISCARD
        if upto is not None:
            kept &= np.arange(log.num_episodes) < upto
        is_prior = np.isin(meta["source"], [int(s) for s in PRIOR_SOURCES]) & kept
        is_online = (meta["source"] == EpisodeSource.ONLINE) & kept
        with_interventions = is_online & (meta["intervention_steps"] > 0)
        loads = [(is_prior, self.prior, False)] + ([(is_online, self.online, False)] if online else [])
        loads.append((with_interventions, self.prior, True))
        # rows each load adds to its buffer, per episode; an episode followed by at least `capacity` rows
        # in its buffer would be dropped again (FIFO) and is never read: a log larger than the buffers is
        # read only as far back as they keep (sampling is by position from the oldest row, so the buffer
        # ends up exactly as after loading everything)
        added = [
            np.where(episodes, meta["intervention_steps"] if only else meta["length"], 0).astype(np.int64)
            for episodes, _, only in loads
        ]
        later = {id(self.prior): 0, id(self.online): 0}
        needed = [None] * len(loads)
        for k in reversed(range(len(loads))):
            episodes, buffer, _ = loads[k]
            after = np.cumsum(added[k][::-1])[::-1] - added[k] + later[id(buffer)]  # rows added after each episode
            needed[k] = episodes & (after < buffer.capacity)
            later[id(buffer)] += int(added[k].sum())
        for (_, buffer, only_interventions), episodes in zip(loads, needed):
            if not episodes.any():
                continue
            # images: episode by episode, never a second copy of every frame in memory; state: bounded batches
            max_rows = 1 if buffer.image_keys else min(LOAD_BATCH_ROWS, buffer.capacity)
            for rows in log.batches(np.flatnonzero(episodes), max_rows):
                self._add_rows(buffer, rows, only_interventions, self.rlif)

    def load_offline(self, log, upto: int | None = None) -> int:
        """Fill the prior buffer with a pretrained run's data (fine-tuning's keep_offline): its demo,
        intervention and online episodes, in log order, never eval episodes or ones a person discarded
        (the first `upto` episodes of `log` when given). Returns the transitions added."""
        if log.num_episodes == 0:
            return 0
        meta = log.episode_meta()
        sources = [int(s) for s in (*PRIOR_SOURCES, EpisodeSource.ONLINE)]
        kept = np.isin(meta["source"], sources) & (meta["label"] != EpisodeLabel.DISCARD)
        if upto is not None:
            kept &= np.arange(log.num_episodes) < upto
        max_rows = 1 if self.prior.image_keys else min(LOAD_BATCH_ROWS, self.prior.capacity)
        for rows in log.batches(np.flatnonzero(kept), max_rows):
            self._add_rows(self.prior, rows, False, self.rlif)
        return int(meta["length"][kept].sum())

    @staticmethod
    def _add_rows(buffer: ReplayBuffer, arrays: dict[str, np.ndarray], only_interventions: bool, rlif: bool) -> None:
        """Add the rows of `arrays` (all, or only intervention steps; whole episodes), relabelled for RLIF
        when `rlif`."""
        arrays["done"] = arrays["terminated"] | arrays["truncated"]
        if rlif:
            relabel_rows(arrays)
        rows = arrays["intervention"].copy() if only_interventions else np.ones(len(arrays["reward"]), bool)
        if not rows.all():
            arrays = {key: value[rows] for key, value in arrays.items()}
        if len(arrays["reward"]):
            buffer.add_arrays(arrays)

    def update(self, actor: bool = True) -> dict[str, float]:
        """`utd` critic updates on one symmetric batch, then the actor's (unless `actor` is False)."""
        cfg = self.agent.config
        batch = sample_symmetric(self.prior, self.online, cfg.utd * cfg.batch_size, self.sample_generator, cfg.utd)
        return self.agent.update(batch, actor)

    def save(self, path: Path, extra: dict) -> None:
        """Checkpoint agent + sampler RNG + `extra` (runner state: plain numbers, strings, lists, dicts);
        written atomically (`write_atomic`)."""
        state = {"agent": self.agent.state_dict(), "sample_generator": self.sample_generator.get_state(), **extra}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_atomic(Path(path), buffer.getbuffer())

    def load(self, path: Path, adopt_scaling: bool = False) -> dict:
        """Restore from a checkpoint; returns the runner state saved with it. The file is read with
        `weights_only=True`: tensors and plain containers only, so a crafted file cannot run code.
        `adopt_scaling`: a fine-tuned run's checkpoint keeps its source's input scaling (SACAgent.load_state_dict)."""
        state = load_weights(path, self.agent.device)
        self.agent.load_state_dict(state.pop("agent"), adopt_scaling)
        self.sample_generator.set_state(state.pop("sample_generator"))
        return state
