"""The relocate pair (robot_rl/tasks/relocate.py) and reset-free practice (`robot-rl train-reset-free`,
robot_rl/runtime/reset_free.py): success, the expert, failure detection, the arm-only reset, the trainer's
alternation, carried-over scenes, person-reset counts, summary, logs, resume and one-line config errors."""

from __future__ import annotations

import json
from contextlib import ExitStack

import numpy as np
import pytest

from robot_rl.cli import main as cli_main
from robot_rl.config import compose
from robot_rl.data.episode_log import EpisodeLog
from robot_rl.data.schema import EpisodeSource
from robot_rl.envs.robot_env import make_robot_env
from robot_rl.runtime.reset_free import ResetFreeRun, check_reset_free_config, train_reset_free
from robot_rl.runtime.rollout import run_episode
from robot_rl.tasks import make_expert

FAST = [
    "agent.compile=false",
    "agent.hidden_dims=[32,32]",
    "agent.batch_size=32",
    "agent.utd=1",
    "runtime.learning_starts=40",
    "runtime.eval_episodes=2",
    "runtime.torch_threads=1",
    "logger.tensorboard=false",
    "num_demos=1",
]


def env_for(direction: str = "forward", arm: str = "panda", **task):
    env = make_robot_env("relocate", "mujoco", seed=0, robot_cfg={"model": arm}, direction=direction, **task)
    env.reset(seed=0)
    return env


def put_cube(env, xy, z_above: float = 0.0) -> None:
    task = env.task
    env.robot.set_object_pose(task.cube_name, np.array([xy[0], xy[1], task.rest_z + z_above]))


# ---------------------------------------------------------------------------------------------- the task
def test_success_only_resting_and_let_go_inside_the_goal():
    env = env_for("forward")
    task, robot = env.task, env.robot
    assert env.observation_space["state"].shape == (12,)
    assert np.allclose(task.observe(robot)["state"][10:], task.region_b)  # the goal centre is observed
    assert task.in_region(robot, task.region_a)  # the standard reset starts the cube in A
    assert task.evaluate(robot) == (0.0, False, False)
    put_cube(env, task.region_b + 0.5 * task.region_half_width)
    assert task.evaluate(robot) == (1.0, True, True)
    put_cube(env, task.region_b + [0.0, 1.5 * task.region_half_width])  # just outside the square
    assert not task.evaluate(robot)[1]
    put_cube(env, task.region_b, z_above=0.03)  # above the goal, not resting
    assert not task.evaluate(robot)[1]
    put_cube(env, task.region_b)
    for _ in range(5):  # close the gripper on nothing: not let go
        robot.apply_action(np.zeros(3), 1.0)
    assert robot.read_state().gripper_opening < 2 * task.cube_half_size
    assert not task.evaluate(robot)[1]
    backward = env_for("backward")
    put_cube(backward, backward.task.region_a)
    assert backward.task.evaluate(backward.robot)[1] and np.allclose(
        backward.task.observe(backward.robot)["state"][10:], backward.task.region_a
    )


@pytest.mark.parametrize("arm", ["panda", "so101"])
def test_the_expert_carries_the_cube_both_ways(arm):
    for direction in ("forward", "backward"):
        env = env_for(direction, arm)
        task, expert = env.task, make_expert(env, noise=0.1, rng=np.random.default_rng(0))
        for seed in range(4):
            steps = []
            result = run_episode(env, expert.act, seed, on_transition=steps.append)
            starts = [t.observation["state"][7:9] for t in steps]
            assert np.all(np.abs(starts[0] - task.start_region) <= task.region_half_width + 1e-6)
            assert result.success and result.length < 60, (arm, direction, seed, result)
            assert task.in_region(env.robot, task.goal_region) and task.resting(env.robot)


def test_failures_are_detected_and_a_cube_in_a_region_is_none():
    env = env_for("forward")
    task, robot = env.task, env.robot
    assert task.failure(robot) is None  # in A after the standard reset
    put_cube(env, task.region_b)
    assert task.failure(robot) is None
    put_cube(env, [0.5, 0.12])  # 2 cm outside the cube area: still in reach
    assert task.failure(robot) is None
    put_cube(env, [0.5, 0.2])
    assert "out of reach" in task.failure(robot)
    put_cube(env, [0.75, 0.0])
    assert "out of reach" in task.failure(robot)
    robot.set_object_pose(task.cube_name, np.array([0.5, 0.0, -0.3]))  # fell off the table
    assert "off the table" in task.failure(robot)
    robot.set_object_pose(task.cube_name, robot.read_state().tcp_pos.copy())
    assert "stuck in the gripper" in task.failure(robot)


def test_keep_scene_resets_move_the_arm_only_unless_the_scene_failed():
    env = env_for("backward")
    task, robot = env.task, env.robot
    task.keep_scene = True
    put_cube(env, task.region_b + [0.01, -0.005])
    for _ in range(10):  # the arm somewhere else, gripper closed
        robot.apply_action(np.array([0.02, 0.02, -0.01]), 1.0)
    cube = robot.object_pos(task.cube_name)
    _, info = env.reset(seed=1)
    assert task.person_reset is None and info["reset_info"].reset_steps > 0  # a physical arm reset ran
    assert np.linalg.norm(robot.object_pos(task.cube_name) - cube) < 0.003  # the cube stayed
    assert np.linalg.norm(robot.read_state().tcp_pos - task.start_tcp) < 0.05
    assert robot.read_state().gripper_opening > 0.07
    put_cube(env, [0.5, 0.2])  # out of reach: the person's reset puts it in the start region (B)
    env.reset(seed=2)
    assert "out of reach" in task.person_reset and task.in_region(robot, task.region_b)


@pytest.mark.parametrize(
    "task, message",
    [
        ({"direction": "sideways"}, "relocate direction must be forward or backward, got 'sideways'"),
        ({"region_a": [0.5, 0.0], "region_b": [0.51, 0.01]}, "relocate regions overlap"),
        ({"region_a": [0.5, -0.095]}, "relocate region_a [0.5, -0.095] +- 0.02 m leaves the panda cube area"),
        ({"region_half_width": 0.0}, "region_half_width must be > 0"),
        ({"region_b": [0.5]}, "region_b must be 2 numbers"),
        ({"reward": "dense"}, "relocate has a sparse reward only"),
    ],
)
def test_bad_task_config_is_a_one_line_error(task, message):
    with pytest.raises(ValueError, match=r"^[^\n]*$") as err:
        make_robot_env("relocate", "mujoco", **task)
    assert message in str(err.value)


def test_so101_regions_come_from_its_cube_area():
    task = env_for("forward", "so101").task
    assert np.allclose(task.region_a, [0.18, -0.056]) and np.allclose(task.region_b, [0.18, 0.056])
    assert task.region_half_width == pytest.approx(0.014)


@pytest.mark.parametrize(
    "args, message",
    [
        (["task=pick_cube"], "train-reset-free trains the relocate pair, not task=pick_cube: set task=relocate"),
        (["resets=sometimes"], "resets='sometimes' is not a reset mode"),
        (["policy=human"], "policy='human' is not a policy"),
        (["task.direction=up"], "task.direction='up' is not a direction"),
        (["task.region_b=[0.5,-0.07]"], "relocate regions overlap"),
        (["steps=-1"], "steps=-1 must be a non-negative integer"),
    ],
)
def test_trainer_config_errors_are_one_line(tmp_path, capsys, args, message):
    status = cli_main(["train-reset-free", f"run_dir={tmp_path / 'run'}", *args, *FAST])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "run" / "forward").exists()  # nothing ran


# ---------------------------------------------------------------------------------------------- the trainer
def online_episodes(run_dir):
    """Every online episode of both directions, in the order they ran: (direction, first state, last state)."""
    episodes = []
    for direction in ("forward", "backward"):
        log = EpisodeLog(run_dir / direction / "episodes.zarr")
        meta = log.episode_meta()
        for i in np.flatnonzero(meta["source"] == EpisodeSource.ONLINE):
            steps = log.episode(int(i))
            first, last = steps["observation/state"][0], steps["next_observation/state"][-1]
            episodes.append((float(steps["timestamp"][0]), direction, first, last, bool(meta["success"][i])))
    return [e[1:] for e in sorted(episodes, key=lambda e: e[0])]


def test_reset_free_run_alternates_carries_the_scene_over_counts_resets_and_resumes(tmp_path):
    """The scripted expert acting (policy=expert) so that episodes succeed: directions alternate, each episode
    starts where the last ended, only the start is a person's reset; the agents learn; a resume continues."""
    run_dir = tmp_path / "run"
    args = [f"run_dir={run_dir}", "policy=expert", "steps=160", "runtime.eval_every=100", *FAST]
    summary = train_reset_free(compose("train_reset_free", args))
    episodes = online_episodes(run_dir)
    directions = [e[0] for e in episodes]
    assert len(episodes) >= 5 and directions[:4] == ["forward", "backward", "forward", "backward"]
    for (_, _, last, success), (_, first, _, _) in zip(episodes, episodes[1:]):
        assert success  # every episode but the last (cut at the step budget) ends with the cube in its goal
        assert np.linalg.norm(first[7:10] - last[7:10]) < 0.005  # the cube where the last episode left it
    assert np.allclose([e[1][10:] for e in episodes if e[0] == "forward"], episodes[0][1][10:])  # the goal: B
    assert summary["person_resets"] == 1 and summary["person_reset_reasons"] == {"start of the run": 1}
    assert summary["episodes"] == len(episodes) == sum(summary["episodes_per_direction"].values())
    assert summary["resets_per_100_episodes"] == pytest.approx(100 / len(episodes), abs=0.01)
    assert summary["env_steps"] == 160 and all(summary["critic_updates"][d] > 0 for d in ("forward", "backward"))
    assert [e["env_steps"] for e in summary["evals"]["forward"]] == [
        e["env_steps"] for e in summary["evals"]["backward"]
    ]
    assert summary["evals"]["forward"][-1]["env_steps"] == 160
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    for d in ("forward", "backward"):
        assert (run_dir / d / "checkpoint.pt").exists() and (run_dir / d / "summary.json").exists()
    resumed = train_reset_free(compose("train_reset_free", [*args[:2], "steps=220", *args[3:]]))
    assert resumed["env_steps"] == 220 and resumed["episodes"] > summary["episodes"]
    assert resumed["person_resets"] == 2  # the resumed process starts from a person's reset too


def test_baseline_counts_a_person_reset_every_episode(tmp_path):
    run_dir = tmp_path / "run"
    summary = train_reset_free(
        compose("train_reset_free", [f"run_dir={run_dir}", "resets=every_episode", "steps=180", *FAST])
    )
    assert summary["resets"] == "every_episode" and summary["policy"] == "agent"
    assert summary["person_resets"] == summary["episodes"] >= 2 and summary["resets_per_100_episodes"] == 100.0
    directions = [e[0] for e in online_episodes(run_dir)]
    assert directions == ["forward", "backward"] * (len(directions) // 2) + ["forward"] * (len(directions) % 2)
    log = EpisodeLog(run_dir / "forward" / "episodes.zarr")
    assert (log.episode_meta()["source"] == EpisodeSource.DEMO).sum() == 1


def test_a_failure_before_an_episode_is_a_counted_person_reset_and_no_episode_starts_solved(tmp_path):
    cfg = compose("train_reset_free", [f"run_dir={tmp_path / 'run'}", *FAST[:-1], "num_demos=0"])
    rt, mode = check_reset_free_config(cfg)
    with ExitStack() as stack:
        pair = ResetFreeRun(cfg, rt, mode, stack)
        pair.setup()
        task, robot = pair.task, pair.robot
        pair.begin("forward", first=True)
        assert pair.person_resets == 1 and task.in_region(robot, task.region_a)
        task.direction = "forward"
        assert pair.next_direction("forward") == "forward"  # the cube still in A: backward's goal, not run
        robot.set_object_pose(task.cube_name, np.array([task.region_b[0], task.region_b[1], task.rest_z]))
        assert pair.next_direction("forward") == "backward"
        pair.begin("backward", first=False)  # the cube in B, in reach: the arm alone resets
        assert pair.person_resets == 1 and task.in_region(robot, task.region_b)
        robot.set_object_pose(task.cube_name, np.array([0.5, 0.0, -0.2]))  # knocked off the table
        pair.begin("forward", first=False)
        assert pair.person_resets == 2 and "off the table" in pair.state["log"][-1]["reason"]
        assert task.in_region(robot, task.region_a)  # the person put it at forward's start
