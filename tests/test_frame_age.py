"""The camera frame age (StepInfo.frame_age_s) travels with its step: env step -> Transition -> zarr log
-> replay of logged episodes, and through the actor -> learner wire format (strictly validated). Older
log formats (2, 3) and their conversion are in tests/test_log_integrity.py."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from robot_rl.data.episode_log import EpisodeLog, EpisodeLogWriter
from robot_rl.data.schema import STEP_INFO_KEY, EpisodeSource, StepInfo, Transition
from robot_rl.runtime.rollout import env_step, run_episode
from robot_rl.runtime.run import logged_transitions
from robot_rl.runtime.wire import WireError, decode_chunk, encode_chunk, space_to_json

AGES = [0.0, float("nan"), 0.033, 1.5, float("nan"), 0.25]  # seconds; NaN: unknown
SPACE = gym.spaces.Dict({"state": gym.spaces.Box(-10.0, 10.0, (2,), np.float32)})
SPEC = {"observation": space_to_json(SPACE), "action_dim": 2}


class AgedEnv(gym.Env):
    """Reports each step's camera frame age from `ages` (None: the env sets no StepInfo at all)."""

    observation_space = SPACE
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(self, ages: list[float] | None) -> None:
        self.ages, self.t = ages, 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {"state": np.array([self.t, -self.t], np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        info = {} if self.ages is None else {STEP_INFO_KEY: StepInfo(frame_age_s=self.ages[self.t])}
        self.t += 1
        done = self.t == (len(self.ages) if self.ages is not None else 3)
        return self._obs(), 0.5, done, False, info


def aged_steps(ages: list[float] = AGES) -> list[Transition]:
    """One episode of AgedEnv, as the runner builds it."""
    steps: list[Transition] = []
    run_episode(AgedEnv(ages), lambda obs: np.zeros(2, np.float32), 0, 7, steps.append)
    return steps


def assert_ages(got: list[float] | np.ndarray, want: list[float]) -> None:
    np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))


def test_env_step_copies_the_frame_age_from_step_info():
    steps = aged_steps()
    assert_ages([t.frame_age_s for t in steps], AGES)
    assert all(isinstance(t.frame_age_s, float) for t in steps)
    env = AgedEnv(None)  # an env that reports nothing: unknown
    observation, _ = env.reset()
    assert math.isnan(env_step(env, observation, np.zeros(2, np.float32), 0, 0).frame_age_s)
    assert math.isnan(Transition({}, np.zeros(2), 0.0, False, False, {}, np.zeros(2)).frame_age_s)


def test_frame_ages_round_trip_through_the_log_and_replay(tmp_path):
    path = str(tmp_path / "episodes.zarr")
    steps = aged_steps()
    with EpisodeLogWriter(path, SPACE, 2) as writer:
        for step in steps:
            writer.add(step)
        writer.end_episode(EpisodeSource.ONLINE)
        for step in aged_steps([0.125, float("nan")]):
            writer.add(step)
        writer.end_episode(EpisodeSource.DEMO)
    log = EpisodeLog(path)
    assert log.format_version == 6
    want = AGES + [0.125, float("nan")]
    ages = log.read("frame_age_s")
    assert ages.dtype == np.float32
    assert_ages(ages, want)
    assert_ages(log.transitions()["frame_age_s"], want)
    assert_ages(log.transitions(sources=[EpisodeSource.DEMO])["frame_age_s"], want[len(AGES) :])
    assert_ages(log.episode(0)["frame_age_s"], AGES)
    assert_ages(log.array("frame_age_s")[: log.num_steps], want)
    replayed = logged_transitions(log.episode(0), ["state"])
    assert_ages([t.frame_age_s for t in replayed], AGES)
    copied = str(tmp_path / "copy.zarr")  # demos copied into a run log keep their ages
    with EpisodeLogWriter(copied, SPACE, 2) as writer:
        assert writer.copy_episodes(log) == 2
    assert_ages(EpisodeLog(copied).read("frame_age_s"), want)


def test_frame_ages_round_trip_through_the_wire_into_the_log(tmp_path):
    steps = aged_steps()
    header, back = decode_chunk(encode_chunk(steps, "robot0", 3, 0, True, spec=SPEC))
    assert header["final"] and len(back) == len(steps)
    assert_ages([t.frame_age_s for t in back], AGES)
    assert all(isinstance(t.frame_age_s, float) for t in back)
    path = str(tmp_path / "episodes.zarr")  # what a learner commits from it
    with EpisodeLogWriter(path, SPACE, 2) as writer:
        for step in back:
            writer.add(step)
        writer.end_episode(EpisodeSource.ONLINE)
    assert_ages(EpisodeLog(path).read("frame_age_s"), AGES)


@pytest.mark.parametrize(
    ("age", "kind", "words"),
    [(float("inf"), "nonfinite", "infinite"), (float("-inf"), "nonfinite", "infinite"), (-0.001, "range", "negative")],
)
def test_wire_rejects_infinite_or_negative_frame_ages(age, kind, words):
    steps = aged_steps()
    steps[2].frame_age_s = age
    with pytest.raises(WireError) as err:
        decode_chunk(encode_chunk(steps, "robot0", 0, 0, True, spec=SPEC))
    assert err.value.kind == kind and "frame_age_s" in str(err.value) and words in str(err.value)
    assert "\n" not in str(err.value)


def test_wire_requires_the_frame_age_field():
    from hostile import variant

    payload = encode_chunk(aged_steps(), "robot0", 0, 0, True, spec=SPEC)
    with pytest.raises(WireError) as err:
        decode_chunk(variant(payload, arrays=lambda a: a.pop("frame_age_s")))
    assert err.value.kind == "malformed" and "frame_age_s" in str(err.value)
    with pytest.raises(WireError) as err:  # a wrong dtype kind
        decode_chunk(variant(payload, arrays=lambda a: a.update(frame_age_s=np.zeros(len(AGES), np.int32))))
    assert err.value.kind == "malformed" and "frame_age_s" in str(err.value)
