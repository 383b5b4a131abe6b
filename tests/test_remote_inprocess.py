"""RemoteActor + RemoteLearner in one process, exchanging chunks and weights over queues (no ROS)."""
from __future__ import annotations

import json
import queue
import time

import pytest

from robot_rl.cli import compose

# pick_cube, seed 0, 20 scripted demos: both runners reach the same eval success at this budget
STEPS = 2500
COMMON = [f"steps={STEPS}", "seed=0", "num_demos=20", "agent.compile=false", "runtime.torch_threads=2",
          "runtime.eval_episodes=20", f"runtime.eval_every={STEPS}", f"runtime.checkpoint_every={STEPS}",
          "runtime.log_every=500"]


def run_remote(cfg, actor_cfg) -> dict:
    """The actor and learner cores over two queues, lock-stepped (`max_steps_ahead=0`), until the
    learner has `steps` online env steps; then the learner's eval round and summary."""
    from robot_rl.runtime.remote_actor import Pacing, RemoteActor
    from robot_rl.runtime.remote_learner import RemoteLearner

    to_learner: queue.Queue[bytes] = queue.Queue()
    to_actor: queue.Queue[tuple[str, object]] = queue.Queue()
    learner = RemoteLearner(cfg, log=print)
    actor = RemoteActor(actor_cfg, "robot0", pacing=Pacing(num_demos=int(cfg.num_demos), max_steps_ahead=0))
    actor.active = True
    try:
        while learner.counts["env_steps"] < int(cfg.steps):
            while not to_learner.empty():
                learner.ingest(to_learner.get())
            while learner.work(max_updates=64):
                pass
            payload = learner.weights()
            if payload is not None:
                to_actor.put(("weights", payload))
            to_actor.put(("status", json.loads(json.dumps(learner.status()))))
            while not to_actor.empty():
                kind, message = to_actor.get()
                actor.offer_weights(message) if kind == "weights" else actor.offer_learner_status(message)
            for chunk in actor.outgoing():
                to_learner.put(chunk)
            if actor.wait_reason() is None:
                actor.play()
        assert learner.backlog == 0 and learner.counts["demo_episodes"] == int(cfg.num_demos)
        learner.eval_round()
        return learner.finish()
    finally:
        actor.close()
        learner.close()


@pytest.mark.timeout(1200)
def test_remote_actor_and_learner_over_a_queue_learn_like_the_embedded_runner(tmp_path):
    """Same task, seed and step budget: the final eval success of the queue-connected actor/learner is
    within 10 points of the embedded runner's, and both write summary.json with the same keys."""
    from robot_rl.runtime.embedded import train

    t0 = time.perf_counter()
    embedded = train(compose("train", [*COMMON, f"run_dir={tmp_path / 'embedded'}"]))
    t1 = time.perf_counter()
    remote = run_remote(compose("train", [*COMMON, f"run_dir={tmp_path / 'remote'}"]),
                        compose("train", [*COMMON, f"run_dir={tmp_path / 'unused'}"]))
    t2 = time.perf_counter()
    print(f"embedded: success {embedded['success_rate']:.0%} in {t1 - t0:.0f}s; "
          f"remote: success {remote['success_rate']:.0%} in {t2 - t1:.0f}s")
    assert set(remote) == set(embedded)
    assert remote["command"] == "learner" and embedded["command"] == "train"
    assert remote["env_steps"] >= STEPS and remote["actors"] == {"robot0": remote["env_steps"]}
    assert remote["demo_episodes"] == embedded["demo_episodes"] == 20
    assert remote["rejected"] == {} and embedded["rejected"] == {} and embedded["actors"] == {}
    assert embedded["success_rate"] >= 0.5, embedded["success_rate"]  # learning happened: the comparison means something
    assert abs(remote["success_rate"] - embedded["success_rate"]) <= 0.10, (remote["success_rate"],
                                                                            embedded["success_rate"])
