"""Hostile network input (issue 10): whatever anyone on the DDS domain publishes is validated, counted
and dropped; nothing crashes, nothing moves the robot, nothing reaches the learner's log, replay or
spec.json, and memory stays bounded.

Unit tests first (wire.decode_chunk and its spec checks, RejectCounter, MujocoRobot's NaN guard,
RemoteLearner in-process), then real processes over real DDS: a bridge (free and lockstep) under a
hostile command set, a learner under a hostile chunk set, and a learner under a 10 s flood of 4 MB
chunks. The hostile sets are tests/hostile.py (shared with the fault bench). This module's DDS
domains are 215..224 (tests/test_ros.py uses 40..89, tests/test_ros_nodes.py 100..199).
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import time
import zipfile
from collections import Counter

import numpy as np
import pytest
from hostile import (
    CommandInjector,
    episode_chunks,
    flood,
    flood_payload,
    foreign_spec,
    hostile_chunks,
    hostile_grippers,
    hostile_rotations,
    hostile_twists,
    peak_rss,
    repack,
    scripted_episode,
    send_cases,
    transitions_publisher,
    unpack,
    variant,
)

from robot_rl.data.schema import Transition
from robot_rl.runtime.wire import (
    MAX_PAYLOAD_BYTES,
    RejectCounter,
    WireError,
    check_chunk,
    check_spec,
    decode_chunk,
    decode_weights,
    encode_weights,
    spec_mismatch,
)

DOMAIN = 215 + os.getpid() % 10  # this module's own DDS domains (ROS's "safe" 215..232 range)
LEARNER_LEVEL = {"gap"}  # kinds only a receiver that follows episodes can tell (decode_chunk passes each chunk)


@pytest.fixture(scope="module")
def episode():
    """(steps, spec) of one scripted pick_cube episode in the in-process sim."""
    return scripted_episode("pick_cube", seed=0)


# ------------------------------------------------------------------------------------ decode_chunk
def test_decode_chunk_rejects_every_hostile_chunk_with_its_kind(episode):
    steps, spec = episode
    cases = hostile_chunks(steps, spec)
    assert {c.kind for c in cases} >= {"malformed", "enum", "shape", "nonfinite", "range", "spec", "gap", "too_large"}
    for case in cases:
        if case.kind in LEARNER_LEVEL:
            for payload in case.messages:  # each chunk is fine on its own
                decode_chunk(payload)
            continue
        if case.kind == "spec":  # a well-formed chunk: its spec is what is wrong
            header, chunk = decode_chunk(case.messages[0])
            if header["spec"] is None:
                continue  # the learner refuses a first chunk without a spec
            assert spec_mismatch(check_spec(header["spec"]), spec) is not None, case.name
            with pytest.raises(WireError) as err:
                check_chunk(chunk, spec)
            assert err.value.kind == "spec"
            continue
        with pytest.raises(WireError) as err:
            decode_chunk(case.messages[0])
        assert err.value.kind == case.kind, f"{case.name}: {err.value}"
        assert "\n" not in str(err.value), case.name  # one line


def test_decode_chunk_accepts_the_valid_episode_and_nan_success_probability(episode):
    steps, spec = episode
    header, back = decode_chunk(episode_chunks(steps, spec, "robot0", 3)[0])
    assert header["actor"] == "robot0" and header["episode"] == 3 and header["spec"] == spec
    assert len(back) == len(steps) and all(math.isnan(t.success_probability) for t in back)  # no classifier
    check_chunk(back, spec)
    assert back[0].observation["state"].flags.writeable  # like np.load's arrays (replay converts them to tensors)


def test_decode_chunk_bounds_sizes_before_allocating(episode):
    steps, spec = episode
    payload = episode_chunks(steps, spec)[0]
    with pytest.raises(WireError) as err:
        decode_chunk(payload, max_bytes=len(payload) - 1)
    assert err.value.kind == "too_large"
    with pytest.raises(WireError) as err:
        decode_chunk(payload, max_steps=len(steps) - 1)
    assert err.value.kind == "too_large"

    # a deflated member that would unpack to 64 MB (a zip bomb) is refused from its declared size
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("reward.npy", b"\0" * (64 << 20))
    assert len(bomb.getvalue()) < 1 << 20
    with pytest.raises(WireError) as err:
        decode_chunk(bomb.getvalue())
    assert err.value.kind == "too_large"

    # an npy header claiming 10^12 elements in a few bytes is refused before numpy allocates them
    arrays, header = unpack(payload)
    liar = io.BytesIO()
    np.lib.format.write_array_header_1_0(liar, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    archive_bytes = io.BytesIO()
    with zipfile.ZipFile(archive_bytes, "w") as archive:
        for name, array in arrays.items():
            if name != "reward":
                buf = io.BytesIO()
                np.save(buf, array)
                archive.writestr(f"{name}.npy", buf.getvalue())
        archive.writestr("reward.npy", liar.getvalue() + b"\0" * 16)
        archive.writestr("__header__.npy", _npy(np.frombuffer(json.dumps(header).encode(), np.uint8)))
    with pytest.raises(WireError, match="declares shape"):
        decode_chunk(archive_bytes.getvalue())
    assert MAX_PAYLOAD_BYTES >= 8 << 20  # an actor's 4 MiB chunk plus one big frame fits


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_decode_chunk_checks_header_fields(episode):
    steps, spec = episode
    good = episode_chunks(steps[:3], spec)[0]
    cases = {
        "actor with a newline": (lambda h: h.update(actor="a\nb"), "malformed"),
        "empty actor": (lambda h: h.update(actor=""), "malformed"),
        "negative episode": (lambda h: h.update(episode=-1), "malformed"),
        "boolean chunk": (lambda h: h.update(chunk=True), "malformed"),
        "final as a number": (lambda h: h.update(final=1), "malformed"),
        "source as a string": (lambda h: h.update(source="online"), "enum"),
        "infinite reset_s": (lambda h: h.update(reset_s=float("inf")), "nonfinite"),
        "negative reset_s": (lambda h: h.update(reset_s=-1.0), "range"),
        "spec as a list": (lambda h: h.update(spec=[1, 2]), "spec"),
        "header not an object": (lambda h: (h.clear(), h.update(kind="chunk")), "malformed"),
    }
    for name, (change, kind) in cases.items():
        with pytest.raises(WireError) as err:
            decode_chunk(variant(good, header=change))
        assert err.value.kind == kind, f"{name}: {err.value}"
    with pytest.raises(WireError) as err:  # an unexpected array
        decode_chunk(variant(good, arrays=lambda a: a.update(extra=np.zeros(3))))
    assert err.value.kind == "malformed"
    with pytest.raises(WireError) as err:  # a string array
        decode_chunk(variant(good, arrays=lambda a: a.update(reward=np.array(["1", "2", "3"]))))
    assert err.value.kind == "malformed"
    with pytest.raises(WireError) as err:  # success probability past 1
        decode_chunk(variant(good, arrays=lambda a: a.update(success_probability=np.full(3, 1.5, np.float32))))
    assert err.value.kind == "range"
    with pytest.raises(WireError) as err:  # a step the log's int32 cannot hold (int64 is accepted, then cast)
        decode_chunk(variant(good, arrays=lambda a: a.update(step=np.array([0, 1, 2**31], np.int64))))
    assert err.value.kind == "range"


def test_chunks_carry_the_episode_logs_step_dtypes(episode):
    """The wire sends each per-step field with the zarr log's dtype (robot_rl/data/schema.py) and still
    decodes another integer width, as an older actor sends it."""
    from robot_rl.data.episode_log import STEP_FIELDS as LOG_FIELDS
    from robot_rl.runtime.wire import STEP_FIELDS as WIRE_FIELDS

    steps, spec = episode
    arrays, _ = unpack(episode_chunks(steps[:3], spec)[0])
    assert set(WIRE_FIELDS) == set(LOG_FIELDS) - {"episode_id"} | {"label"}
    for name in set(LOG_FIELDS) - {"episode_id"}:
        assert arrays[name].dtype == np.dtype(LOG_FIELDS[name]), name

    def widths_of_old(a: dict) -> None:  # step int64, reward_source and label int8, as the wire sent them before
        a.update(
            step=a["step"].astype(np.int64),
            reward_source=a["reward_source"].astype(np.int8),
            label=a["label"].astype(np.int8),
        )

    old = variant(episode_chunks(steps[:3], spec)[0], arrays=widths_of_old)
    _, decoded = decode_chunk(old)
    assert [t.step for t in decoded] == [t.step for t in steps[:3]]
    assert [t.reward_source for t in decoded] == [t.reward_source for t in steps[:3]]


def test_check_spec_and_spec_mismatch(episode):
    _, spec = episode
    assert check_spec(spec) is spec and spec_mismatch(spec, spec) is None
    assert "shape" in spec_mismatch(foreign_spec(spec), spec) or "[11]" in spec_mismatch(foreign_spec(spec), spec)
    bounds = json.loads(json.dumps(spec))
    bounds["observation"]["state"]["high"][0] += 0.5
    assert "bounds" in spec_mismatch(bounds, spec)
    wider = json.loads(json.dumps(spec))
    wider["action_dim"] = 7
    assert "action size" in spec_mismatch(wider, spec)
    state = spec["observation"]["state"]
    bad = [
        {"observation": {"../../etc": state}, "action_dim": 4},  # a key that would be a path in the zarr store
        {"observation": {"__meta": state}, "action_dim": 4},
        {"observation": {"state": state, "state/x": state}, "action_dim": 4},  # a group and an array at once
        {"observation": {"state": {**state, "shape": [-3]}}, "action_dim": 4},
        {"observation": {"state": {**state, "dtype": "object"}}, "action_dim": 4},
        {"observation": {"state": {**state, "low": [float("nan")] * state["shape"][0]}}, "action_dim": 4},
        {"observation": {"state": {**state, "low": state["high"], "high": state["low"]}}, "action_dim": 4},
        {"observation": {"state": state}, "action_dim": 0},
        {"observation": {"state": state}, "action_dim": 10**6},
        {"observation": {}, "action_dim": 4},
        {"observation": {"state": state}, "action_dim": 4, "extra": 1},
        {"observation": {"image/x": {"shape": [100000, 100000, 3], "dtype": "uint8"}}, "action_dim": 4},
    ]
    for case in bad:
        with pytest.raises(WireError) as err:
            check_spec(case)
        assert err.value.kind == "spec", case


def test_decode_weights_refuses_nonfinite_weights_and_bad_versions():
    header, weights = decode_weights(encode_weights({"w": np.ones(3, np.float32)}, 4))
    assert header["version"] == 4
    with pytest.raises(WireError) as err:
        decode_weights(encode_weights({"w": np.array([1.0, np.nan], np.float32)}, 5))
    assert err.value.kind == "nonfinite"
    arrays, header = unpack(encode_weights({"w": np.ones(3, np.float32)}, 4))
    with pytest.raises(WireError, match="version"):
        decode_weights(repack(arrays, {**header, "version": "4"}))


def test_reject_counter_logs_once_per_kind_then_rate_limited():
    lines, now = [], [0.0]
    counter = RejectCounter(lines.append, period_s=10.0, clock=lambda: now[0])
    for _ in range(5):
        counter.add("nonfinite", "dropped a NaN")
    counter.add("spec", "dropped a foreign spec")
    assert lines == ["dropped a NaN", "dropped a foreign spec"]
    now[0] = 11.0
    counter.add("nonfinite", "dropped a NaN")
    assert lines[-1] == "dropped a NaN [5 nonfinite rejections since the last report]"
    assert counter.counts() == {"nonfinite": 6, "spec": 1} and counter.total() == 7


# ------------------------------------------------------------------------------------- MujocoRobot
def test_mujoco_robot_refuses_nonfinite_actions_and_moves_nothing():
    from robot_rl.robots.mujoco import MujocoRobot

    robot = MujocoRobot()
    robot.reset(np.array([0.5, 0.0, 0.2]))
    robot.apply_action(np.array([0.0, 0.0, -0.01]), -1.0)
    qpos, ctrl, target = robot.data.qpos.copy(), robot.data.ctrl.copy(), robot.tcp_target.copy()
    sim_time = robot.data.time
    for delta, grip in (
        ([np.nan, 0.0, 0.0], -1.0),
        ([0.0, np.inf, 0.0], -1.0),
        ([0.0, 0.0, 0.0], np.nan),
        ([0.0, 0.0, 0.0], -np.inf),
    ):
        with pytest.raises(ValueError, match="not finite") as err:
            robot.apply_action(np.array(delta), grip)
        assert "\n" not in str(err.value)
        np.testing.assert_array_equal(robot.data.qpos, qpos)
        np.testing.assert_array_equal(robot.data.ctrl, ctrl)
        np.testing.assert_array_equal(robot.tcp_target, target)
        assert robot.data.time == sim_time
    with pytest.raises(ValueError, match="not finite"):
        robot.reset(np.array([0.5, np.nan, 0.2]))
    np.testing.assert_array_equal(robot.data.qpos, qpos)
    state = robot.apply_action(np.array([0.0, 0.0, 0.01]), -1.0)  # still works
    assert np.all(np.isfinite(state.tcp_pos))
    robot.close()


# ------------------------------------------------------------------------------ RemoteLearner core
def _learner_cfg(run_dir, *extra: str):
    from robot_rl.config import compose

    return compose(
        "train",
        [
            f"run_dir={run_dir}",
            "agent.compile=false",
            "runtime.learning_starts=8",
            "agent.batch_size=16",
            "agent.utd=1",
            "runtime.torch_threads=1",
            "num_demos=0",
            *extra,
        ],
    )


def _feed(core, payloads) -> None:
    for payload in payloads:
        core.ingest(payload)
        core.work(max_updates=0)


def test_remote_learner_counts_and_commits_nothing_hostile(episode, tmp_path):
    from robot_rl.data.episode_log import EpisodeLog
    from robot_rl.runtime.remote_learner import SPEC_FILE, RemoteLearner

    steps, spec = episode
    lines: list[str] = []
    core = RemoteLearner(_learner_cfg(tmp_path / "run"), log=lines.append)
    assert core.status()["ready"] and core.status()["spec_pinned"]
    assert json.loads((tmp_path / "run" / SPEC_FILE).read_text()) == spec  # pinned from its own env
    cases = hostile_chunks(steps, spec)
    for case in cases:
        _feed(core, case.messages)
    expected = Counter(case.kind for case in cases)
    assert core.status()["rejected"] == dict(expected)
    assert core.status()["episodes"] == 0 and len(core.learner.online) == 0 and core.writer.num_episodes == 0
    assert not core.partial and core.pending_bytes == 0 and core.inbox_bytes == 0
    logged = [line for line in lines if "dropped" in line]
    assert len(logged) == len(expected) and all("\n" not in line for line in logged)  # once per kind
    _feed(core, episode_chunks(steps, spec, "robot0", 0, chunk_steps=6))
    status = core.status()
    assert status["episodes"] == 1 and status["env_steps"] == len(steps) and status["actors"] == {"robot0": len(steps)}
    core.finish()
    log = EpisodeLog(tmp_path / "run" / "episodes.zarr")
    assert log.num_episodes == 1 and np.isfinite(log.array("observation/state")[:]).all()
    assert json.loads((tmp_path / "run" / SPEC_FILE).read_text()) == spec


def test_remote_learner_bounds_what_it_holds(episode, tmp_path):
    from robot_rl.runtime.remote_learner import IngestLimits, RemoteLearner

    steps, spec = episode
    limits = IngestLimits(
        inbox_chunks=3, pending_per_actor=2, pending_episodes=3, episode_timeout_s=0.5, max_episode_steps=len(steps) + 2
    )
    core = RemoteLearner(_learner_cfg(tmp_path / "run"), log=lambda _: None, limits=limits)
    first = lambda actor, n: episode_chunks(steps, spec, actor, n, chunk_steps=4)[0]  # noqa: E731

    for n in range(5):  # the inbox keeps the first 3 and drops the newest
        core.ingest(first("a", n))
    assert len(core.inbox) == 3 and core.status()["rejected"] == {"inbox_full": 2}
    core.work(max_updates=0)
    # a per-actor bound: of actor a's 3 episodes in progress the stalest was evicted
    assert sorted(core.partial) == [("a", 1), ("a", 2)] and core.status()["rejected"]["evicted"] == 1
    _feed(core, [first("b", 0), first("c", 0)])  # over 3 in progress in all: the stalest (a's) go
    assert len(core.partial) == 3 and ("c", 0) in core.partial
    time.sleep(0.6)
    core.work(max_updates=0)  # nothing arrived for longer than episode_timeout_s
    assert not core.partial and core.pending_bytes == 0 and core.status()["rejected"]["stale"] == 3
    # an episode longer than max_episode_steps is dropped when it grows past it
    long_steps = steps + steps[:5]
    _feed(core, episode_chunks(long_steps, spec, "d", 0, chunk_steps=4))  # 20 > 18 at chunk 4
    rejected = core.status()["rejected"]
    assert rejected["too_long"] == 1 and rejected["orphan"] >= 1 and core.status()["episodes"] == 0
    core.ingest(b"\0" * (limits.max_payload_bytes + 1))  # dropped in ingest, before it is copied
    assert core.status()["rejected"]["too_large"] == 1 and not core.inbox
    _feed(core, episode_chunks(steps, spec, "e", 0, chunk_steps=4))
    assert core.status()["episodes"] == 1


def test_remote_learner_without_a_local_env_accepts_a_spec_only_from_a_valid_episode(episode, tmp_path):
    from robot_rl.runtime.remote_learner import SPEC_FILE, RemoteLearner

    steps, spec = episode
    run = tmp_path / "run"
    cfg = _learner_cfg(run, "robot=ros")  # a real robot: the learner cannot build its env
    core = RemoteLearner(cfg, log=lambda _: None)
    assert not core.status()["ready"] and not core.status()["spec_pinned"]
    foreign = foreign_spec(spec)
    nan_episode = variant(
        episode_chunks(steps, foreign, "mallory", 0)[0],  # a NaN episode may not set the spec
        arrays=lambda a: a.update({"reward": np.full(len(steps), np.nan, np.float32)}),
    )
    _feed(core, [nan_episode])
    matrix = {"state": np.zeros((2, 2), np.float32)}  # well-formed, but no agent takes a 2-D float observation
    odd = [
        Transition(
            observation=matrix,
            next_observation=matrix,
            action=np.zeros(4, np.float32),
            policy_action=np.zeros(4, np.float32),
            reward=0.0,
            terminated=i == 2,
            truncated=False,
        )
        for i in range(3)
    ]
    odd_spec = {
        "observation": {
            "state": {"shape": [2, 2], "dtype": "float32", "low": [[-1.0] * 2] * 2, "high": [[1.0] * 2] * 2}
        },
        "action_dim": 4,
    }
    _feed(core, episode_chunks(odd, odd_spec, "mallory", 1))
    assert core.learner is None and not (run / "episodes.zarr").exists()
    half = episode_chunks(steps, spec, "robot0", 0, chunk_steps=5)
    _feed(core, half[:-1])  # not finished: nothing is decided yet
    assert not (run / SPEC_FILE).exists() and core.learner is None
    _feed(core, half[-1:])
    assert json.loads((run / SPEC_FILE).read_text()) == spec and core.status()["episodes"] == 1
    _feed(core, next(c for c in hostile_chunks(steps, spec) if c.name.startswith("a foreign spec")).messages)
    assert core.status()["rejected"] == {"nonfinite": 1, "spec": 2}
    core.finish()
    core.close()
    restarted = RemoteLearner(cfg, log=lambda _: None)  # resumes from spec.json and the log
    assert restarted.status()["ready"] and restarted.spec == spec and restarted.status()["env_steps"] == len(steps)
    restarted.finish()
    restarted.close()


def test_remote_learner_refuses_a_run_dir_whose_spec_is_not_its_env(episode, tmp_path):
    from robot_rl.runtime.remote_learner import SPEC_FILE, RemoteLearner

    _, spec = episode
    run = tmp_path / "run"
    run.mkdir()
    (run / SPEC_FILE).write_text(json.dumps(foreign_spec(spec)))  # poisoned by an earlier version
    with pytest.raises(ValueError, match="does not match the env this config builds") as err:
        RemoteLearner(_learner_cfg(run), log=lambda _: None)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------- over real DDS
rclpy = pytest.importorskip("rclpy")
from ros_processes import ros_session  # noqa: E402


@pytest.fixture
def ros(tmp_path, gl, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with ros_session(DOMAIN, tmp_path) as session:
        yield session


@pytest.mark.parametrize("mode", ["free", "lockstep"])
def test_bridge_drops_hostile_commands_and_keeps_working(ros, mode):
    from robot_rl.robots.mujoco import DEFAULT_WORKSPACE
    from robot_rl.robots.ros import RosRobot

    nodes, probe = ros
    ns = f"/hostile_{mode}"
    bridge = nodes.start("bridge", "bridge", f"mode:={mode}", "start_armed:=true", namespace=ns)
    twists, grippers = hostile_twists(0.0), hostile_grippers(0.0)
    injector = CommandInjector(probe.node, ns, twists + grippers)
    robot = RosRobot(ns, timeout=30.0)
    try:
        robot.reset(np.array([0.5, 0.0, 0.2]))
        start = robot.read_state().tcp_pos if mode == "lockstep" else robot.apply_action(np.zeros(3), -1.0).tcp_pos
        moved = [robot.apply_action(np.array([0.0, 0.0, -0.015]), 1.0).tcp_pos for _ in range(8)]
        for _ in range(8):
            up = robot.apply_action(np.array([0.015, 0.0, 0.0]), -1.0).tcp_pos
        deadline = time.monotonic() + 20
        while injector.index < 2 * len(injector.cases) and time.monotonic() < deadline:
            robot.apply_action(np.zeros(3), -1.0)  # keep observations coming (lockstep publishes per step)
        injector.active = False
        time.sleep(0.5)
        stats = json.loads(probe.trigger(f"{ns}/stats").message)
    finally:
        robot.close()
    assert bridge.poll() is None, nodes.log("bridge")
    # legal commands in between still moved the arm as commanded
    assert moved[-1][2] < start[2] - 0.08 and up[0] > moved[-1][0] + 0.08, (start, moved[-1], up)
    expected = {case.kind for case in twists + grippers}
    assert set(stats["invalid"]) == expected, (stats["invalid"], injector.sent)
    assert all(stats["invalid"][kind] >= injector.sent[kind] for kind in expected)
    assert stats["applied"] >= 16 and "internal" not in stats["invalid"]
    # whatever was sent, the TCP never left the workspace (or became NaN)
    lo, hi = DEFAULT_WORKSPACE
    positions = np.array(injector.positions)
    assert len(positions) > 20 and np.isfinite(positions).all()
    assert (positions >= lo - 0.01).all() and (positions <= hi + 0.01).all(), (positions.min(0), positions.max(0))
    log = nodes.log("bridge")
    assert "twist_nonfinite" in log and log.count("dropped a command (twist_nonfinite)") <= 2  # logged, rate-limited


def _learner_args(run_dir):
    return (
        f"overrides:=[run_dir={run_dir}, steps=100000, runtime.learning_starts=8, agent.compile=false, "
        "agent.utd=1, agent.batch_size=16, runtime.torch_threads=1, runtime.checkpoint_every=100000]"
    )


def test_learner_process_rejects_hostile_chunks_then_trains_on_a_valid_episode(ros, tmp_path, episode):
    from robot_rl.data.episode_log import EpisodeLog

    steps, spec = episode
    nodes, probe = ros
    run = tmp_path / "run"
    learner = nodes.start("learner", "learner", _learner_args(run))
    probe.watch("/robot_rl/learner_status")
    probe.wait_for("/robot_rl/learner_status", lambda s: s["ready"], 90, "the learner")
    send = transitions_publisher(probe.node)
    expected = send_cases(send, hostile_chunks(steps, spec))
    status = probe.wait_for("/robot_rl/learner_status", lambda s: s["rejected"] == expected, 60, "every rejection")
    assert status["episodes"] == 0 and status["env_steps"] == 0 and learner.poll() is None
    for payload in episode_chunks(steps, spec, "robot0", 0, chunk_steps=7):
        send(payload)
    status = probe.wait_for(
        "/robot_rl/learner_status",
        lambda s: s["episodes"] == 1 and s["updates"] > 0,
        60,
        "the valid episode, trained on",
    )
    assert status["rejected"] == expected and status["actors"] == {"robot0": len(steps)}
    nodes.kill("learner", signal.SIGINT)  # checkpoint, close the log
    log = EpisodeLog(run / "episodes.zarr")
    assert log.num_episodes == 1 and log.episode_meta()["length"].tolist() == [len(steps)]
    for name in ("observation/state", "action", "reward", "grasp_penalty"):
        assert np.isfinite(log.array(name)[:]).all(), name
    assert json.loads((run / "spec.json").read_text()) == spec
    text = nodes.log("learner")
    assert all(f"({kind})" in text for kind in expected) and "Traceback" not in text


def test_learner_memory_stays_bounded_under_a_flood(ros, tmp_path, episode):
    steps, spec = episode
    nodes, probe = ros
    learner = nodes.start("learner", "learner", _learner_args(tmp_path / "run"))
    probe.watch("/robot_rl/learner_status")
    probe.wait_for("/robot_rl/learner_status", lambda s: s["ready"], 90, "the learner")
    send = transitions_publisher(probe.node)
    for payload in episode_chunks(steps, spec, "robot0", 0):  # warm up: one episode decoded, committed, trained
        send(payload)
    probe.wait_for("/robot_rl/learner_status", lambda s: s["episodes"] == 1 and s["updates"] > 0, 60, "warm-up")
    time.sleep(1.0)
    with peak_rss(learner.pid) as rss:
        sent = flood("/robot_rl/transitions", DOMAIN, 10.0, flood_payload())
        time.sleep(2.0)
    growth = rss["peak"] - rss["baseline"]
    print(
        f"flood: {sent}; learner RSS {rss['baseline']:.0f} MB -> peak {rss['peak']:.0f} MB (+{growth:.0f} MB), "
        f"rejected {probe.latest['/robot_rl/learner_status']['rejected']}"
    )
    assert sent["sent"] > 20 and learner.poll() is None
    assert growth < 200, f"learner RSS grew by {growth:.0f} MB under the flood"
    # it still answers: a valid episode after the flood is committed
    for payload in episode_chunks(steps, spec, "robot0", 1):
        send(payload)
    status = probe.wait_for("/robot_rl/learner_status", lambda s: s["episodes"] == 2, 60, "an episode after the flood")
    assert status["rejected"].get("spec", 0) + status["rejected"].get("inbox_full", 0) > 0


def test_bridge_with_rotation_executes_rotations_and_drops_angular_overspeed(ros):
    """task.rotation=true: the bridge executes angular twists within max_tcp_angular_speed and refuses faster ones."""
    import mujoco

    from robot_rl.robots.mujoco import mat_to_rotvec
    from robot_rl.robots.ros import RosRobot

    nodes, probe = ros
    ns = "/hostile_rotation"
    bridge = nodes.start(
        "bridge", "bridge", "mode:=lockstep", "start_armed:=true", "overrides:=[task.rotation=true]", namespace=ns
    )
    cases = hostile_rotations(0.0)
    injector = CommandInjector(probe.node, ns, cases)
    robot = RosRobot(ns, timeout=30.0)
    try:
        assert robot.supports_rotation
        robot.reset(np.array([0.5, 0.0, 0.2]))
        home = robot.tcp_quat()
        for _ in range(3):  # 0.3 rad about the base z axis, 0.1 rad per step
            robot.apply_action(np.zeros(3), -1.0, np.array([0.0, 0.0, 0.1]))
        for _ in range(10):
            robot.apply_action(np.zeros(3), -1.0, np.zeros(3))
        deadline = time.monotonic() + 20
        while injector.index < 2 * len(cases) and time.monotonic() < deadline:
            robot.apply_action(np.zeros(3), -1.0, np.zeros(3))
        injector.active = False
        time.sleep(0.5)
        reached = robot.tcp_quat()
        stats = json.loads(probe.trigger(f"{ns}/stats").message)
    finally:
        robot.close()
    assert bridge.poll() is None, nodes.log("bridge")

    def mat(quat: np.ndarray) -> np.ndarray:
        out = np.empty(9)
        mujoco.mju_quat2Mat(out, np.asarray(quat, float))
        return out.reshape(3, 3)

    offset = mat_to_rotvec(mat(reached) @ mat(home).T)  # base-frame rotation from home
    assert np.linalg.norm(offset - [0.0, 0.0, 0.3]) < np.radians(2.0), np.degrees(offset)
    assert set(stats["invalid"]) == {case.kind for case in cases}, (stats["invalid"], injector.sent)
    assert "twist_angular" not in stats["invalid"] and stats["max_tcp_angular_speed"] < 50.0
