"""The console page in a real headless browser against a real training run (`robot-rl train console=true
teleop=console`, pick_cube in the sim, learning on), checked in the run's episode log afterwards."""

from __future__ import annotations

import os
import time

import numpy as np

from robot_rl.data.episode_log import EpisodeLog
from robot_rl.data.schema import EpisodeLabel, EpisodeSource
from tests.browser import (
    chrome,
    full_page_screenshot,
    key_down,
    key_up,
    set_pad,
    skip_without_chromium,
    stub_gamepad,
    wait_for,
)
from tests.console_page import click, confirm_clear_estop, open_page, robot_state, table_rows, wait_images_change
from tests.console_proc import console_process


def steps_between(log: EpisodeLog, t0: float, t1: float) -> np.ndarray:
    stamps = log.read("timestamp")
    return np.flatnonzero((stamps >= t0) & (stamps <= t1))


def test_console_supervises_a_training_run(tmp_path):
    skip_without_chromium()
    run_dir = tmp_path / "run"
    args = (
        "train",
        f"run_dir={run_dir}",
        "task=pick_cube",
        "console=true",
        "teleop=console",
        "num_demos=2",
        "steps=1000000",
        "runtime.eval_every=1000000",
        "logger.tensorboard=false",
    )
    marks: dict[str, float] = {}
    with console_process(*args) as run, chrome() as d:
        open_page(d, run.url)
        main_window = d.current_window_handle

        # the cameras stream and their images change
        wait_images_change(d, "robot", "front")
        wait_for(lambda: robot_state(d).get("step", 0) > 0, 30, "the run to step")

        # take-over: the dead-man (Space) + W drives +x; release hands back
        click(d, "take")
        wait_for(lambda: robot_state(d).get("lease") == "you", 5, "the lease")
        x0 = robot_state(d)["tcp"][0]
        marks["hold"] = time.time()
        key_down(d, " ", "w")
        wait_for(lambda: robot_state(d).get("mode") == "person", 5, "the person's mode")
        time.sleep(1.0)
        key_up(d, "w", " ")
        marks["release"] = time.time()
        wait_for(lambda: robot_state(d).get("mode") != "person", 2, "the hand-back")
        assert robot_state(d)["tcp"][0] > x0
        time.sleep(1.0)  # the policy's steps after the hand-back

        # success ends the episode labelled success (the table shows it)
        marks["success"] = time.time()
        click(d, "label-success")
        wait_for(lambda: any(r["label"] == "success" for r in table_rows(d)), 15, "a success row in the table")

        # e-stop: the loop stops and arming is refused until the e-stop is cleared (after a confirmation)
        click(d, "estop")
        wait_for(lambda: robot_state(d).get("estop") is True, 2, "the e-stop")
        marks["estop"] = time.time()
        frozen = robot_state(d)
        time.sleep(0.8)
        assert robot_state(d)["step"] == frozen["step"] and robot_state(d)["tcp"] == frozen["tcp"]
        click(d, "arm")
        wait_for(lambda: "e-stop" in d.find_element("id", "notices").text, 3, "the refusal notice")
        assert robot_state(d)["armed"] is False
        confirm_clear_estop(d)
        wait_for(lambda: robot_state(d).get("estop") is False, 3, "the cleared e-stop")
        assert robot_state(d)["armed"] is False
        time.sleep(0.3)
        assert robot_state(d)["step"] == frozen["step"], "cleared but not armed: nothing may move"
        marks["arm"] = time.time()
        click(d, "arm")
        wait_for(lambda: robot_state(d).get("step") != frozen["step"], 10, "the run to go on once armed")

        # a gamepad through the Gamepad API: LB (dead-man) + left stick up drives +x
        stub_gamepad(d)
        marks["pad"] = time.time()
        set_pad(d, axes=[0.0, -1.0, 0.0, 0.0], pressed={4: True})
        wait_for(lambda: robot_state(d).get("mode") == "person", 5, "the pad's take-over")
        time.sleep(0.8)
        set_pad(d, axes=[0.0, 0.0, 0.0, 0.0], pressed={4: False})
        marks["pad_end"] = time.time()
        wait_for(lambda: robot_state(d).get("mode") != "person", 2, "the pad's hand-back")

        if os.environ.get("ROBOT_RL_SCREENSHOT"):  # the README's picture: ROBOT_RL_SCREENSHOT=docs/console.png
            full_page_screenshot(d, os.environ["ROBOT_RL_SCREENSHOT"])

        # a second tab drives, then is closed mid take-over: control returns to the policy within 200 ms
        click(d, "release")
        d.switch_to.new_window("tab")
        open_page(d, run.url, 10)
        key_down(d, " ", "d")
        wait_for(lambda: robot_state(d).get("mode") == "person", 5, "the second tab's take-over")
        time.sleep(0.5)
        d.close()
        marks["closed"] = time.time()
        d.switch_to.window(main_window)
        key_up(d, "d", " ")
        wait_for(lambda: robot_state(d).get("mode") == "policy", 2, "the policy back in control")
        time.sleep(1.0)  # steps after the hand-back, to see in the log
        marks["end"] = time.time()

        # reset ends the episode in progress (truncated), so everything above is committed to the log
        episode = robot_state(d)["episode"]
        click(d, "take")
        wait_for(lambda: robot_state(d).get("lease") == "you", 5, "the lease")
        click(d, "reset")
        wait_for(lambda: any(r["episode"] >= episode for r in table_rows(d)), 15, "the reset episode's commit")

    log = EpisodeLog(run_dir / "episodes.zarr")
    intervention = log.read("intervention")
    action = log.read("action")
    policy_action = log.read("policy_action")
    state = log.read("observation/state")
    episode_id = log.read("episode_id")

    held = steps_between(log, marks["hold"], marks["release"])
    driven = held[intervention[held]]
    assert len(driven) >= 5, f"only {len(driven)} intervention steps while the key was held"
    # W is +x only (a step may fall between the dead-man's key and W's, or W's release and the dead-man's: zero)
    assert np.all(action[driven, 0] >= 0) and np.allclose(action[driven, 1:3], 0), "W is +x only"
    assert (action[driven, 0] > 0).sum() >= 5
    assert not np.allclose(action[driven], policy_action[driven]), "the human action, not the policy's, is logged"
    inner = driven[
        (driven + 1 < len(state)) & (episode_id[np.minimum(driven + 1, len(state) - 1)] == episode_id[driven])
    ]
    assert (state[inner + 1, 0] - state[inner, 0]).sum() > 0.02, "the TCP moved +x"
    after = steps_between(log, marks["release"] + 0.3, marks["success"])
    assert len(after) and not intervention[after].any(), "released: the policy drives again"

    meta = log.episode_meta()
    labelled = np.flatnonzero((meta["label"] == EpisodeLabel.SUCCESS) & (meta["source"] == EpisodeSource.ONLINE))
    assert len(labelled) >= 1, "the success button's episode is in the log, labelled success"

    assert len(steps_between(log, marks["estop"], marks["arm"])) == 0, "a step ran while e-stopped or disarmed"

    pad = steps_between(log, marks["pad"], marks["pad_end"])
    pad_driven = pad[intervention[pad]]
    assert (action[pad_driven, 0] > 0).sum() >= 3 and np.all(action[pad_driven, 0] >= 0), "the pad's stick drives +x"

    late = steps_between(log, marks["closed"] + 0.2, marks["end"])
    assert len(late) > 0 and not intervention[late].any(), "a step after the tab closed (+200 ms) was still driven"
