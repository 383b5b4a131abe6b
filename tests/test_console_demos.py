"""`robot-rl record-demos teleop=console` driven from a real headless browser, then a training run that
uses the recorded demos (their count and labels checked in its log)."""

from __future__ import annotations

import numpy as np

from robot_rl.data.episode_log import EpisodeLog
from robot_rl.data.schema import EpisodeLabel, EpisodeSource
from tests.browser import chrome, hold_key, skip_without_chromium, wait_for
from tests.cli_proc import robot_rl
from tests.console_proc import console_process


def test_browser_records_demos_that_training_uses(tmp_path):
    skip_without_chromium()
    out = tmp_path / "demos"
    args = ("record-demos", "task=pick_cube", "teleop=console", "episodes=2", "keep=all", f"out={out}")
    with console_process(*args) as rec, chrome() as d:
        d.get(rec.url)
        wait_for(lambda: d.find_element("id", "connection").text == "connected", 60, "the page to connect")
        d.find_element("id", "take").click()
        for episode, (keys, label) in enumerate([(("w", "r"), "success"), (("a",), "failure")], start=1):
            rec.wait_for(rf"episode {episode}: go")
            hold_key(d, " ", 1.0, *keys)  # the dead-man and motion keys for a second: about 10 steps at 10 Hz
            d.find_element("id", f"label-{label}").click()
            rec.wait_for(rf"episode {episode}: kept .*labelled {label}")
        rec.proc.wait(30)
    assert rec.proc.returncode == 0, rec.output

    demos = EpisodeLog(out / "episodes.zarr")
    meta = demos.episode_meta()
    assert meta["label"].tolist() == [EpisodeLabel.SUCCESS, EpisodeLabel.FAILURE]
    assert (meta["source"] == EpisodeSource.DEMO).all() and (meta["intervention_steps"] >= 5).all()
    action = demos.read("action")[demos.read("intervention")]
    assert (action[:, 0] > 0).any() and (action[:, 2] > 0).any() and (action[:, 1] > 0).any()  # +x, +z, then +y

    run_dir = tmp_path / "run"
    robot_rl("train", f"run_dir={run_dir}", f"demos={out}", "steps=30", "runtime.eval_episodes=1", check=True)
    log = EpisodeLog(run_dir / "episodes.zarr").episode_meta()
    copied = log["source"] == EpisodeSource.DEMO
    assert copied.sum() == 2 and log["label"][copied].tolist() == meta["label"].tolist()
    assert np.array_equal(log["length"][copied], meta["length"])
