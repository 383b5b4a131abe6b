"""ROS 2: the bridge, RosRobot, actor and learner as separate processes over real DDS (rclpy from the
`ros` extra), plus the transport payloads they exchange."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from robot_rl.data.episode_log import EpisodeLog
from robot_rl.data.schema import EpisodeLabel, EpisodeSource, RewardSource, Transition
from robot_rl.runtime.wire import (
    WireError,
    decode_chunk,
    decode_weights,
    encode_chunk,
    encode_weights,
    space_from_json,
    space_to_json,
)

DOMAIN = 40 + os.getpid() % 50  # this module's own DDS domain: no cross-talk with other runs


def _transitions(n: int, image: bool = True) -> list[Transition]:
    rng = np.random.default_rng(0)
    obs = [
        {
            "state": rng.normal(size=7).astype(np.float32),
            **({"image/front": rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)} if image else {}),
        }
        for _ in range(n + 1)
    ]
    return [
        Transition(
            observation=obs[i],
            next_observation=obs[i + 1],
            action=rng.uniform(-1, 1, 4).astype(np.float32),
            policy_action=rng.uniform(-1, 1, 4).astype(np.float32),
            reward=float(i == n - 1),
            terminated=i == n - 1,
            truncated=False,
            intervention=i == 1,
            step=i,
            timestamp=100.0 + i,
            success=i == n - 1,
            reward_source=RewardSource.CLASSIFIER,
            grasp_penalty=-0.02 * (i == 2),
            success_probability=0.1 * i,
            label=EpisodeLabel.SUCCESS if i == n - 1 else EpisodeLabel.NONE,
        )
        for i in range(n)
    ]


def test_chunk_round_trip_restores_every_field_and_next_frames():
    steps = _transitions(5)
    header, back = decode_chunk(
        encode_chunk(
            steps, "robot0", 7, 0, final=True, source=EpisodeSource.ONLINE, reset_s=0.25, spec={"action_dim": 4}
        )
    )
    assert header == {
        "kind": "chunk",
        "actor": "robot0",
        "episode": 7,
        "chunk": 0,
        "final": True,
        "source": int(EpisodeSource.ONLINE),
        "reset_s": 0.25,
        "spec": {"action_dim": 4},
        "perturbation": None,  # unperturbed steps (tests/test_randomize.py sends drawn values across)
    }
    assert len(back) == 5
    for a, b in zip(steps, back):
        for key in a.observation:
            np.testing.assert_array_equal(a.observation[key], b.observation[key])
            np.testing.assert_array_equal(a.next_observation[key], b.next_observation[key])
        np.testing.assert_array_equal(a.action, b.action)
        np.testing.assert_array_equal(a.policy_action, b.policy_action)
        assert (a.reward, a.terminated, a.intervention, a.step, a.timestamp, a.success, a.reward_source, a.label) == (
            b.reward,
            b.terminated,
            b.intervention,
            b.step,
            b.timestamp,
            b.success,
            b.reward_source,
            b.label,
        )
        assert b.grasp_penalty == pytest.approx(a.grasp_penalty) and b.success_probability == pytest.approx(
            a.success_probability
        )


def test_payloads_refuse_pickles_and_the_wrong_kind():
    import io

    weights = encode_weights({"actor.w": np.ones((2, 3), np.float32)}, version=12)
    header, arrays = decode_weights(weights)
    assert header["version"] == 12 and arrays["actor.w"].shape == (2, 3)
    with pytest.raises(WireError, match="expected a chunk payload"):
        decode_chunk(weights)
    buffer = io.BytesIO()
    np.savez(buffer, evil=np.array([object()], dtype=object))  # a pickled object array
    with pytest.raises(WireError, match="unreadable"):
        decode_weights(buffer.getvalue())


def test_space_json_round_trip_keeps_bounds():
    import gymnasium as gym

    space = gym.spaces.Dict(
        {
            "state": gym.spaces.Box(np.array([-1, 0], np.float32), np.array([1, 2], np.float32)),
            "image/front": gym.spaces.Box(0, 255, (4, 4, 3), np.uint8),
        }
    )
    back = space_from_json(space_to_json(space))
    np.testing.assert_array_equal(back["state"].low, [-1, 0])
    np.testing.assert_array_equal(back["state"].high, [1, 2])
    assert back["image/front"].shape == (4, 4, 3) and back["image/front"].dtype == np.uint8


def test_policy_weights_move_the_policy_between_agents():
    from robot_rl.agents.sac import SACAgent, SACConfig

    a = SACAgent({"state": 5}, 4, SACConfig(compile=False, grasp_critic=True), seed=0)
    b = SACAgent({"state": 5}, 4, SACConfig(compile=False, grasp_critic=True), seed=1)
    obs = {"state": np.linspace(-1, 1, 5).astype(np.float32)}
    assert not np.allclose(a.act(obs, deterministic=True), b.act(obs, deterministic=True))
    header, weights = decode_weights(encode_weights(a.policy_weights(), 3))
    b.load_policy_weights(weights)
    np.testing.assert_array_equal(a.act(obs, deterministic=True), b.act(obs, deterministic=True))
    c = SACAgent({"state": 6}, 4, SACConfig(compile=False), seed=0)
    with pytest.raises(ValueError, match="same task and agent config"):
        c.load_policy_weights(weights)


# ---------------------------------------------------------------------------------------------- over DDS
rclpy = pytest.importorskip("rclpy")
from ros_processes import ros_session  # noqa: E402


@pytest.fixture
def ros(tmp_path, gl):
    with ros_session(DOMAIN, tmp_path) as session:
        yield session


def test_ros_robot_runs_robot_env_unchanged_and_obeys_arm_and_estop(ros):
    from robot_rl.envs.robot_env import RobotEnv
    from robot_rl.robots.ros import RobotUnavailable, RosRobot
    from robot_rl.runtime.rollout import run_episode
    from robot_rl.tasks import make_expert, make_task

    nodes, probe = ros
    nodes.start("bridge", "bridge", "mode:=lockstep", "start_armed:=true", namespace="/arm0")
    robot = RosRobot("/arm0", timeout=30.0)
    try:
        env = RobotEnv(robot, make_task("pick_cube"), seed=3)
        expert = make_expert(env, noise=0.0, rng=np.random.default_rng(0))
        results = [run_episode(env, expert.act, seed=s) for s in range(3)]
        assert all(r.success for r in results), [
            r.length for r in results
        ]  # the scripted expert lifts the cube over ROS

        state = robot.reset(np.array([0.5, 0.05, 0.2]))
        assert np.linalg.norm(state.tcp_pos - [0.5, 0.05, 0.2]) < 0.01
        moved = robot.apply_action(np.array([0.0, 0.0, -0.02]), -1.0)
        assert moved.tcp_pos[2] < state.tcp_pos[2] - 0.01

        assert probe.set_bool("/arm0/arm", False).success
        time.sleep(0.5)  # the latched status reaches the robot
        with pytest.raises(RobotUnavailable, match="disarmed"):
            robot.apply_action(np.zeros(3), -1.0)
        assert probe.set_bool("/arm0/estop", True).success
        assert not probe.set_bool("/arm0/arm", True).success  # latched: arming needs the e-stop cleared
        assert not probe.trigger("/arm0/reset").success
        assert probe.set_bool("/arm0/estop", False).success and probe.set_bool("/arm0/arm", True).success
        time.sleep(0.5)
        assert robot.apply_action(np.zeros(3), -1.0) is not None
    finally:
        robot.close()


def test_bridge_runs_the_serial_robot_unchanged(ros):
    """robot_bridge over `robot=serial` (the firmware in the loop on the SO-101 rig): the actor's RosRobot
    takes the arm from the bridge and the scripted expert lifts the cube through DDS, pyserial and the firmware."""
    from robot_rl.envs.robot_env import RobotEnv
    from robot_rl.robots.ros import RosRobot
    from robot_rl.runtime.rollout import run_episode
    from robot_rl.tasks import make_expert, make_task

    nodes, probe = ros
    nodes.start(
        "bridge", "bridge", "mode:=lockstep", "start_armed:=true", "overrides:=[robot=serial]", namespace="/arm5"
    )
    robot = RosRobot("/arm5", timeout=60.0)
    try:
        assert robot.arm.name == "so101" and robot.joint_names[0] == "shoulder_pan"
        env = RobotEnv(robot, make_task("pick_cube"), seed=3)
        expert = make_expert(env, noise=0.0, rng=np.random.default_rng(0))
        results = [run_episode(env, expert.act, seed=s) for s in range(2)]
        assert all(r.success for r in results), [r.length for r in results]
        assert probe.set_bool("/arm5/estop", True).success  # the bridge's e-stop stops the serial arm too
    finally:
        robot.close()


def test_ros_robot_refuses_stale_observations(ros):
    import signal

    from robot_rl.robots.ros import RosRobot, StaleObservationError

    nodes, probe = ros
    bridge = nodes.start("bridge", "bridge", "mode:=free", "start_armed:=true", namespace="/arm1")
    robot = RosRobot("/arm1", timeout=30.0, max_obs_age=0.25)
    try:
        robot.reset(None)
        for _ in range(5):
            robot.apply_action(np.array([0.0, 0.0, 0.01]), -1.0)  # real time: one control period each
        bridge.send_signal(signal.SIGSTOP)  # the bridge hangs: no more observations
        time.sleep(0.3)
        with pytest.raises(StaleObservationError, match="not acting on it"):
            robot.apply_action(np.zeros(3), -1.0)
        bridge.send_signal(signal.SIGCONT)
        time.sleep(0.5)
        robot.apply_action(np.zeros(3), -1.0)
        stats = json.loads(probe.trigger("/arm1/stats").message)
        assert stats["applied"] >= 6 and stats["obs_to_command_ms"]["n"] >= 6
    finally:
        robot.close()


def _learner_args(run_dir, steps):
    return (
        f"overrides:=[run_dir={run_dir}, steps={steps}, runtime.learning_starts=50, runtime.checkpoint_every=100, "
        "agent.compile=false, agent.utd=1, agent.batch_size=64, runtime.torch_threads=1]"
    )


def _actor_args(namespace, actor_id, demos, on_lost, max_ahead):
    return (
        f"overrides:=[robot=ros, robot.namespace={namespace}, robot.timeout=30.0, task.max_steps=30]",
        f"actor_id:={actor_id}",
        f"num_demos:={demos}",
        f"on_learner_lost:={on_lost}",
        "learner_timeout_s:=1.5",
        f"max_steps_ahead:={max_ahead}",
    )


def test_two_actors_feed_one_learner_which_survives_a_kill(ros, tmp_path):
    nodes, probe = ros
    run_dir = tmp_path / "run"
    for name in ("robot0", "robot1"):
        nodes.start(
            f"bridge_{name}",
            "bridge",
            "mode:=lockstep",
            "start_armed:=true",
            f"seed:={len(name)}",
            namespace=f"/{name}",
        )
        nodes.start(
            f"actor_{name}",
            "actor",
            *_actor_args(
                f"/{name}", name, 3 if name == "robot0" else 0, *(("hold", 0) if name == "robot0" else ("keep", 0))
            ),
            namespace=f"/{name}",
        )
    nodes.start("learner", "learner", _learner_args(run_dir, 100_000))
    probe.watch("/robot_rl/learner_status")
    for name in ("robot0", "robot1"):
        probe.watch(f"/{name}/actor/status")
        status = probe.wait_for(f"/{name}/actor/status", lambda s: True, 90, f"{name}'s actor")
        assert status["active"] is False and status["env_steps"] == 0  # actors start inactive
        assert probe.set_bool(f"/{name}/actor/activate", True).success

    # transitions reach the learner from both actors, and it trains
    learner = probe.wait_for(
        "/robot_rl/learner_status",
        lambda s: (
            s["demo_episodes"] >= 3
            and s["updates"] > 0
            and all(s["actors"].get(n, 0) >= 60 for n in ("robot0", "robot1"))
        ),
        240,
        "episodes from both actors and training",
    )
    # weights reach the actors
    for name in ("robot0", "robot1"):
        probe.wait_for(f"/{name}/actor/status", lambda s: s["weights_version"] > 0, 60, f"weights at {name}")
    probe.wait_for("/robot_rl/learner_status", lambda s: s["env_steps"] >= 200, 240, "a checkpoint's worth of steps")
    time.sleep(1.0)  # past the checkpoint at 100/200 steps

    # kill -9 the learner: robot0's actor (hold) stops commanding its bridge; robot1's (keep) goes on
    # with its last weights and keeps its finished episodes for the learner's return
    nodes.kill("learner")
    probe.wait_for(
        "/robot0/actor/status",
        lambda s: not s["learner_ok"] and s["state"] == "learner lost: holding",
        30,
        "robot0 holding",
    )
    probe.wait_for(
        "/robot1/actor/status",
        lambda s: not s["learner_ok"] and s["outbox"] >= 1,
        60,
        "robot1 acting on and keeping episodes",
    )
    applied = [json.loads(probe.trigger(f"/{n}/stats").message)["applied"] for n in ("robot0", "robot1")]
    time.sleep(2.0)
    after = [json.loads(probe.trigger(f"/{n}/stats").message)["applied"] for n in ("robot0", "robot1")]
    assert after[0] == applied[0] and after[1] > applied[1]

    log = EpisodeLog(run_dir / "episodes.zarr")
    meta = log.episode_meta()
    assert int((meta["source"] == EpisodeSource.DEMO).sum()) >= 3
    assert int(meta["length"][meta["source"] == EpisodeSource.ONLINE].sum()) >= 200
    before = log.num_episodes

    # a restarted learner resumes from its checkpoint and log, and the actors feed it again (both pace
    # themselves to the learner: what the dead one never committed must not hold them up)
    paced = probe.latest["/robot0/actor/status"]["episodes"]
    nodes.start("learner2", "learner", _learner_args(run_dir, 100_000))
    resumed = probe.wait_for(
        "/robot_rl/learner_status",
        lambda s: s["ready"] and s["updates"] >= 100 and s["env_steps"] >= learner["env_steps"],
        120,
        "the resumed learner",
    )
    probe.wait_for(
        "/robot_rl/learner_status",
        lambda s: s["episodes"] > resumed["episodes"] + 2,
        180,
        "new episodes after the restart",
    )
    assert "resuming" in nodes.log("learner2")
    probe.wait_for("/robot0/actor/status", lambda s: s["episodes"] >= paced + 2, 60, "robot0 acting again")
    probe.wait_for(
        "/robot1/actor/status", lambda s: s["learner_ok"] and s["outbox"] == 0, 30, "robot1's kept episodes sent"
    )
    assert probe.latest["/robot_rl/learner_status"]["demo_episodes"] == resumed["demo_episodes"]  # no second demo set
    nodes.stop_all()
    assert EpisodeLog(run_dir / "episodes.zarr").num_episodes > before


def test_deploy_actor_runs_a_fixed_policy_in_real_time(ros, tmp_path):
    import subprocess
    import sys

    nodes, probe = ros
    policy = tmp_path / "policy"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "robot_rl.cli",
            "train",
            f"run_dir={policy}",
            "steps=0",
            "num_demos=0",
            "runtime.eval_episodes=1",
            "agent.compile=false",
            "task.max_steps=10",
        ],
        check=True,
        capture_output=True,
    )
    nodes.start("bridge", "bridge", "mode:=free", "start_armed:=true", namespace="/arm2")
    nodes.start(
        "actor",
        "actor",
        "overrides:=[robot=ros, robot.namespace=/arm2, task.max_steps=10]",
        f"policy:={policy}",
        "episodes:=2",
        namespace="/arm2",
    )
    probe.watch("/arm2/actor/status")
    status = probe.wait_for("/arm2/actor/status", lambda s: True, 90, "the deploy actor")
    assert status["state"] == "inactive" and status["episodes"] == 0
    assert probe.set_bool("/arm2/actor/activate", True).success
    status = probe.wait_for("/arm2/actor/status", lambda s: s["state"] == "done", 60, "two episodes")
    assert status["episodes"] == 2 and status["weights_version"] == -1  # its own policy, no learner
    stats = json.loads(probe.trigger("/arm2/stats").message)
    assert stats["applied"] >= 20 and stats["rejected_stale"] <= 0.1 * stats["applied"]  # real time: answers in time


def test_deploy_runs_an_exported_policy_over_ros_after_the_activate_service(ros, tmp_path):
    """`robot-rl deploy robot=ros activate=service` (what deploy.launch.py starts): nothing moves until
    <ns>/deploy/activate is called; then its episodes run through the bridge and are logged."""
    import subprocess
    import sys

    from robot_rl.data.episode_log import EpisodeLog

    nodes, probe = ros
    run = tmp_path / "run"
    cli = [sys.executable, "-m", "robot_rl.cli"]
    train = ["train", f"run_dir={run}", "steps=0", "num_demos=0", "runtime.eval_episodes=1", "agent.compile=false"]
    subprocess.run([*cli, *train, "task.max_steps=10"], check=True, capture_output=True)
    subprocess.run([*cli, "export", f"run_dir={run}"], check=True, capture_output=True)
    nodes.start("bridge", "bridge", "mode:=free", "start_armed:=true", namespace="/arm4")
    out = tmp_path / "deploy"
    log = open(tmp_path / "deploy.log", "w")
    deploy = subprocess.Popen(
        [*cli, "deploy", f"policy={run / 'policy.onnx'}", "robot=ros", "robot.namespace=/arm4", "episodes=2"]
        + ["activate=service", f"out={out}"],
        env=nodes.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while "deploy/activate" not in (tmp_path / "deploy.log").read_text() and time.monotonic() < deadline:
            assert deploy.poll() is None, (tmp_path / "deploy.log").read_text()
            time.sleep(0.2)
        time.sleep(1.0)
        assert not out.joinpath("summary.json").exists() and deploy.poll() is None  # waits, nothing moved
        assert probe.set_bool("/arm4/deploy/activate", True).success
        assert deploy.wait(timeout=120) == 0, (tmp_path / "deploy.log").read_text()
    finally:
        if deploy.poll() is None:
            deploy.kill()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 2 and summary["faults"] == 0
    assert EpisodeLog(out / "episodes.zarr").num_episodes == 2


def test_ros_robot_gives_vision_tasks_the_bridge_camera_frames(ros):
    from robot_rl.envs.robot_env import RobotEnv
    from robot_rl.robots.ros import RosRobot
    from robot_rl.tasks import make_task

    nodes, _ = ros
    nodes.start(
        "bridge",
        "bridge",
        "mode:=lockstep",
        "start_armed:=true",  # cameras and size: the task's
        "overrides:=[task=pick_cube_vision, 'task.image_size=[48,64]']",
        namespace="/cam0",
    )
    robot = RosRobot("/cam0", timeout=30.0)
    try:
        env = RobotEnv(robot, make_task("pick_cube_vision", image_size=[48, 64]), seed=0)
        observation, _ = env.reset(seed=0)
        observation, *_ = env.step(np.array([0.0, 0.0, -0.5, 0.0], np.float32))
        assert observation["image/front"].shape == observation["image/wrist"].shape == (48, 64, 3)
        with pytest.raises(ValueError, match="task.image_size"):
            robot.render("front", 128, 128)
        assert observation["image/front"].std() > 5 and not np.array_equal(
            observation["image/front"], observation["image/wrist"]
        )
    finally:
        robot.close()


def test_a_learner_that_fails_on_its_first_episode_exits_with_a_one_line_error(ros, tmp_path):
    import gymnasium as gym
    from std_msgs.msg import UInt8MultiArray

    from robot_rl.ros import contract

    nodes, probe = ros
    learner = nodes.start("learner", "learner", f"overrides:=[run_dir={tmp_path / 'run'}, demos={tmp_path / 'none'}]")
    pub = probe.node.create_publisher(UInt8MultiArray, "/robot_rl/transitions", contract.qos("stream"))
    space = gym.spaces.Dict({"state": gym.spaces.Box(-1, 1, (7,), np.float32)})
    chunk = encode_chunk(
        _transitions(3, image=False),
        "robot0",
        0,
        0,
        final=True,
        spec={"observation": space_to_json(space), "action_dim": 4},
    )
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    pub.publish(UInt8MultiArray(data=chunk))
    assert learner.wait(timeout=60) == 2  # the demos it was told to copy do not exist: it says so and stops
    errors = [line for line in nodes.log("learner").splitlines() if "error:" in line]
    assert len(errors) == 1 and str(tmp_path / "none") in errors[0], nodes.log("learner")[-2000:]
