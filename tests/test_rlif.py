"""RLIF (reward.source=interventions): -1 on the step before each take-over and 0 elsewhere, even on the task's
success; the log keeps the task's success; evals score the task; demos, resumed and offline data are relabelled
when they enter the learner; bad configs are one-line CLI errors."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from cli_proc import FAST_TRAIN
from cli_proc import robot_rl as run_cli

from robot_rl.agents.sac import SACConfig
from robot_rl.config import UserError, compose
from robot_rl.data.episode_log import EpisodeLog
from robot_rl.data.schema import EpisodeSource, RewardSource
from robot_rl.envs.factory import make_actor_env, make_env, without_teleop
from robot_rl.envs.intervention_reward import check_reward_source, relabel_episode, relabel_rows, takeover_rewards
from robot_rl.runtime.learner import Learner
from robot_rl.runtime.rollout import run_episode
from robot_rl.runtime.run import TrainingRun, check_train_config

RLIF = ["teleop=sim_operator", "reward.source=interventions"]
HOLD = np.zeros(4, np.float32)  # a policy that does nothing: the operator sees no progress and steps in


def starts(flags) -> list[int]:
    """Steps where a take-over begins."""
    flags = list(flags)
    return [t for t, f in enumerate(flags) if f and (t == 0 or not flags[t - 1])]


def rollout(overrides: list[str], seed: int = 1):
    cfg = compose("train", [*RLIF, "teleop.noise=0.0", *overrides])
    env = make_actor_env(cfg, 0, np.random.default_rng(0))
    steps = []
    run_episode(env, lambda obs: HOLD, seed, 0, steps.append)
    return env, steps


def test_minus_one_only_before_each_takeover_even_on_task_success():
    env, steps = rollout([])  # the stall rule: several short take-overs, no success
    try:
        flags = [t.intervention for t in steps]
        assert len(starts(flags)) >= 2
        # the actor's env: no reward at all, the source says so
        assert all(t.reward == 0.0 for t in steps)
        assert {t.reward_source for t in steps} == {RewardSource.INTERVENTION}
        relabel_episode(steps)
        minus = [t for t, s in enumerate(steps) if s.reward == -1.0]
        assert minus == [s - 1 for s in starts(flags)]  # the policy step that led to each take-over
        assert all(steps[t].reward == 0.0 for t in range(len(steps)) if t not in minus)
        assert all(not steps[t].intervention for t in minus) and all(steps[t].policy_action is not None for t in minus)
        # the task env under it (scripted demos) still pays the task's reward
        assert without_teleop(env).__class__.__name__ == "RobotEnv"
    finally:
        env.close()

    # the operator takes over at step 3 and finishes the task: success ends the episode as the env does, reward 0
    env, steps = rollout(["teleop.rule=schedule", "teleop.start_step=3", "teleop.duration=200"])
    env.close()
    relabel_episode(steps)
    last = steps[-1]
    assert last.success and last.terminated and not last.truncated and last.reward == 0.0  # success is the task's
    assert not any(t.terminated for t in steps[:-1])
    assert [t.reward for t in steps] == [-1.0 if t == 2 else 0.0 for t in range(len(steps))]


def test_takeover_rewards_respect_episodes_and_relabelling_is_idempotent():
    flags = np.array([1, 1, 0, 0, 1, 0, 1, 1, 0], bool)  # a take-over at step 0 has no step before it
    episode = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])  # step 4 starts episode 1: step 3 is not penalised
    np.testing.assert_array_equal(takeover_rewards(flags), [0, 0, 0, -1, 0, -1, 0, 0, 0])
    np.testing.assert_array_equal(takeover_rewards(flags, episode), [0, 0, 0, 0, 0, -1, 0, 0, 0])
    rows = {
        "reward": np.ones(9, np.float32),
        "terminated": np.eye(9, dtype=bool)[3] | np.eye(9, dtype=bool)[8],
        "truncated": np.zeros(9, bool),
        "intervention": flags,
        "episode_index": episode,
        "reward_source": np.zeros(9, np.uint8),
    }
    ends = {k: rows[k].copy() for k in ("terminated", "truncated")}
    once = {k: v.copy() for k, v in relabel_rows(rows).items()}
    twice = relabel_rows(rows)
    for key in once:
        np.testing.assert_array_equal(once[key], twice[key])
    for key, flags in ends.items():  # the episodes' ends are the env's (as RLIF's reference code keeps them)
        np.testing.assert_array_equal(once[key], flags)
    assert (once["reward_source"] == RewardSource.INTERVENTION).all()


def test_value_range_must_hold_the_takeover_penalty():
    with pytest.raises(UserError, match=r"agent.value_range=\[0.0, 1.0\] cannot hold the -1"):
        check_reward_source(compose("train", [*RLIF, "agent.value_range=[0.0,1.0]"]))
    assert check_reward_source(compose("train", [*RLIF, "agent.value_range=[-5.0,0.0]"])) == "interventions"
    assert check_reward_source(compose("train", [])) == "task"


@pytest.mark.parametrize(
    "args, message",
    [
        (["reward.source=humans"], "reward.source='humans' is not a reward source: choose one of task, interventions"),
        (["reward.source=interventions"], "teleop=sim_operator|spacemouse|gamepad|keyboard|console|ros"),
        ([*RLIF, "reward.classifier=/x/classifier.pt"], "reward.classifier both give the reward: pick one"),
    ],
)
def test_bad_configs_are_one_line_errors(args, message, tmp_path):
    proc = run_cli("train", f"run_dir={tmp_path}/r", *args, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "r").exists()  # refused before the run directory was made


def prior_rows(learner: Learner) -> tuple[np.ndarray, np.ndarray]:
    n = len(learner.prior)
    return learner.prior.reward[:n].cpu().numpy(), learner.prior.terminated[:n].cpu().numpy()


def test_demos_enter_the_learner_relabelled_and_the_log_keeps_them_true(tmp_path):
    for demos in (None, tmp_path / "a"):  # scripted demos, then a demos= store (the first run's log)
        run_dir = tmp_path / ("b" if demos else "a")
        cfg = compose(
            "train", [*RLIF, f"run_dir={run_dir}", "num_demos=2", "agent.compile=false", f"demos={demos or 'null'}"]
        )
        rt = check_train_config(cfg)
        env = make_actor_env(cfg, 0, np.random.default_rng(0))
        with TrainingRun(cfg, rt) as run:
            run.setup(env.observation_space, 4)
            run.resume()
            run.collect_demos(without_teleop(env))
            reward, terminated = prior_rows(run.learner)
            value_range = run.learner.agent.config.value_range
            run.writer.close()
        env.close()
        assert len(reward) > 0 and not reward.any() and terminated.sum() == 2  # reward 0; each demo ends on success
        assert value_range == pytest.approx([-1 / (1 - cfg.agent.discount), 0.0])  # TD targets: returns of -1s
        log = EpisodeLog(run_dir / "episodes.zarr")
        assert (log.episode_meta()["source"] == EpisodeSource.DEMO).sum() == 2
        assert log.read("reward", slice(0, log.num_steps)).sum() == 2.0  # the log: the task's reward, one per demo


def test_cli_training_logs_takeover_rewards_evals_score_the_task_and_resume_keeps_it(tmp_path):
    run = tmp_path / "run"
    # the operator steps in at step 2 and lifts the cube: every online episode succeeds with one take-over
    args = [*RLIF, "teleop.rule=schedule", "teleop.start_step=2", "teleop.duration=200", "num_demos=2"]
    args += [f"run_dir={run}", *FAST_TRAIN, "runtime.eval_episodes=2"]
    run_cli("train", "steps=150", *args, check=True)
    run_cli("train", "steps=250", *args, check=True)  # resumes the run
    root = zarr.open_group(str(run / "episodes.zarr"), mode="r")
    ends = root["meta/episode_ends"][:]
    begins = np.concatenate([[0], ends[:-1]])
    source, success = root["meta/source"][: len(ends)], root["meta/success"][: len(ends)]
    online = np.flatnonzero(source == EpisodeSource.ONLINE)
    assert root["meta/eval_step"][: len(ends)].max() == 250 and len(online) >= 4
    for e in online:
        rows = slice(begins[e], ends[e])
        reward, flags = root["data/reward"][rows], root["data/intervention"][rows]
        np.testing.assert_array_equal(reward, takeover_rewards(flags))
        if len(flags) > 2:  # (not an episode the step budget cut before the take-over)
            assert starts(flags) == [2] and list(np.flatnonzero(reward)) == [1] and reward[1] == -1.0
        assert (root["data/reward_source"][rows] == 3).all() and not root["data/terminated"][rows][:-1].any()
        if success[e]:  # the task's success, on the last step, which ends the episode as the env does
            assert root["data/success"][rows][-1] and root["data/terminated"][rows][-1]
    assert success[online].sum() >= len(online) - 2  # all but the episodes the two step budgets cut
    for e in np.flatnonzero(source == EpisodeSource.EVAL):  # evals: the task's env, reward and success
        rows = slice(begins[e], ends[e])
        assert (root["data/reward_source"][rows] == RewardSource.TASK).all()
        assert success[e] == root["data/terminated"][rows][-1] == (root["data/reward"][rows][-1] == 1.0)
    assert root["data/reward"][begins[online[0]] : ends[online[-1]]].min() == -1.0

    # resume: the log's episodes go back into the buffers relabelled (the demos' task reward of 1 included)
    log = EpisodeLog(run / "episodes.zarr")
    env = make_env(compose("train", []))
    for rlif in (True, False):
        learner = Learner(env.observation_space, 4, SACConfig(compile=False), 10_000, rlif=rlif)
        learner.load_log(log)
        reward, terminated = prior_rows(learner)
        online_reward = learner.online.reward[: len(learner.online)].cpu().numpy()
        assert terminated.any()  # the demos end on success either way
        if rlif:
            assert reward.max() == 0.0 and online_reward.min() == -1.0
        else:
            assert reward.max() == 1.0
    env.close()
