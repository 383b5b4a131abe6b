"""RecordVideo (robot_rl/envs/video.py) and `robot-rl eval video=N`: files decoded back with imageio-ffmpeg."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from cli_proc import robot_rl

from robot_rl.data.episode_log import EpisodeLog
from robot_rl.data.schema import EpisodeSource, StepInfo
from robot_rl.envs.video import BAND_BG, RecordVideo

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

TESTS = Path(__file__).resolve().parent


def decode(path: Path) -> np.ndarray:
    """All frames of a video file, uint8[T, H, W, 3]."""
    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    width, height = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in gen]
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    return np.stack(frames)


def band_has_text(band: np.ndarray) -> bool:
    """Light text on the dark band: plenty of pixels far from its background."""
    return int((np.abs(band.astype(int) - BAND_BG).max(axis=2) > 100).sum()) > 50


class CameraEnv(gym.Env):
    """One 30x40 camera and no sim: step k shows a flat colour (10 + 30 k, 80, 200 - 20 k); step 2 reports
    two safety actions, the last step success; `crash_at` raises on that step."""

    observation_space = gym.spaces.Dict(
        {
            "image/cam": gym.spaces.Box(0, 255, (30, 40, 3), np.uint8),
            "state": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
        }
    )
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    metadata = {"render_fps": 5}

    def __init__(self, steps: int = 5) -> None:
        self.steps, self.k = steps, 0

    @staticmethod
    def colour(k: int) -> tuple[int, int, int]:
        return (10 + 30 * k, 80, 200 - 20 * k)

    def _obs(self) -> dict:
        image = np.empty((30, 40, 3), np.uint8)
        image[:] = self.colour(self.k)
        return {"image/cam": image, "state": np.zeros(2, np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.k = 0
        return self._obs(), {}

    def step(self, action):
        self.k += 1
        done = self.k >= self.steps
        info = StepInfo(success=done, safety_actions=["clip_box", "clip_speed"] if self.k == 2 else [])
        return self._obs(), float(done), done, False, {"step_info": info}


def test_image_observation_frames_overlay_and_padding(tmp_path):
    env = RecordVideo(CameraEnv(steps=5), tmp_path, episodes=2)
    assert env.fps == 5.0  # no robot: the env's render_fps
    for _ in range(3):  # the third episode is not recorded
        env.reset()
        while not env.step(env.action_space.sample())[2]:
            pass
    env.close()
    assert env.paths == [tmp_path / "episode_000.mp4", tmp_path / "episode_001.mp4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episode_000.mp4", "episode_001.mp4"]
    frames = decode(env.paths[0])
    # reset + 5 steps; the 30x40 camera scaled to 256 tall (341 wide), padded to even: 342
    assert frames.shape[0] == 6 and frames.shape[2] == 342 and frames.shape[1] % 2 == 0
    for k, frame in enumerate(frames):  # the frames in order: each step's flat colour (label corner aside)
        assert np.abs(frame[40:250, 60:330].mean(axis=(0, 1)) - CameraEnv.colour(k)).max() < 6
    bands = frames[:, 260:, :330]
    assert all(band_has_text(b) for b in bands)
    assert np.abs(bands[1].astype(int) - bands[2]).mean() > 0.5  # step and return change the text
    assert len(decode(env.paths[1])) == 6

    # the band says SUCCESS in green and the step's safety actions in amber, only when they happened
    def amber(frame: np.ndarray) -> int:
        r, g, b = frame[256:].astype(int).transpose(2, 0, 1)
        return int(((r > 150) & (g > 90) & (b < 100)).sum())

    def green(frame: np.ndarray) -> int:
        r, g, b = frame[256:].astype(int).transpose(2, 0, 1)
        return int(((g > 140) & (g - r > 50) & (g - b > 40)).sum())

    assert amber(frames[2]) > 30 and amber(frames[1]) < 5
    assert green(frames[5]) > 30 and green(frames[4]) < 5
    # and the band is the overlay: a frame drawn for the same observation without the step's report differs
    plain = env.frame(CameraEnv(steps=5)._obs())
    assert plain.shape == frames[0].shape
    with_report = env.frame(CameraEnv(steps=5)._obs(), 1.0, StepInfo(success=True, safety_actions=["clip_box"]))
    assert np.array_equal(plain[:256], with_report[:256]) and not np.array_equal(plain[256:], with_report[256:])


def test_crash_mid_episode_leaves_finished_files_playable(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(TESTS)!r})
        from test_video import CameraEnv
        from robot_rl.envs.video import RecordVideo
        env = RecordVideo(CameraEnv(steps=4), {str(tmp_path)!r}, episodes=3)
        env.reset()
        while not env.step(env.action_space.sample())[2]:
            pass
        env.reset()
        env.step(env.action_space.sample())
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    assert len(decode(tmp_path / "episode_000.mp4")) == 5
    assert not (tmp_path / "episode_001.mp4").exists()  # the episode in progress never took a final name


def test_close_finishes_the_episode_in_progress(tmp_path):
    env = RecordVideo(CameraEnv(steps=10), tmp_path, episodes=1)
    env.reset()
    env.step(env.action_space.sample())
    env.step(env.action_space.sample())
    env.close()
    assert env.paths == [tmp_path / "episode_000.mp4"] and len(decode(env.paths[0])) == 3


def test_state_task_shows_the_sims_front_camera(tmp_path, gl):
    from robot_rl.envs.robot_env import make_mujoco_env

    env = RecordVideo(make_mujoco_env("pick_cube", seed=0, max_steps=6), tmp_path, episodes=1)
    assert env.fps == 10.0  # 1 / control_dt
    env.reset(seed=1)
    robot = env.unwrapped.robot
    front, wrist = robot.render("front", 256, 256), robot.render("wrist", 256, 256)
    steps = 0
    while True:
        steps += 1
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            break
    env.close()
    frames = decode(tmp_path / "episode_000.mp4")
    assert frames.shape[0] == steps + 1 and frames.shape[2] == 256 and frames.shape[1] > 256
    picture = frames[0, 20:256].astype(int)  # below the camera label
    assert np.abs(picture - front[20:]).mean() < 6 and np.abs(picture - wrist[20:]).mean() > 20
    assert band_has_text(frames[0, 256:]) and band_has_text(frames[-1, 256:])


def test_image_task_tiles_the_observation_cameras(tmp_path, gl):
    from robot_rl.envs.robot_env import make_mujoco_env

    env = make_mujoco_env("pick_cube_vision", seed=0, max_steps=4, image_size=[32, 32])
    env = RecordVideo(env, tmp_path, episodes=1)
    observations = [env.reset(seed=2)[0]]
    while True:
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        observations.append(obs)
        if terminated or truncated:
            break
    env.close()
    frames = decode(tmp_path / "episode_000.mp4")
    assert frames.shape[:3] == (len(observations), frames.shape[1], 512)  # front | wrist, 32 px -> 256 px
    for frame, obs in zip(frames, observations):
        tiles = [np.repeat(np.repeat(obs[f"image/{cam}"], 8, 0), 8, 1).astype(int) for cam in ("front", "wrist")]
        left, right = frame[24:256, :256].astype(int), frame[24:256, 256:].astype(int)
        assert np.abs(left - tiles[0][24:]).mean() < 6 and np.abs(right - tiles[1][24:]).mean() < 6
        assert np.abs(left - tiles[1][24:]).mean() > 20  # and not the other way round


def test_env_without_frames_is_refused():
    with pytest.raises(ValueError, match="cannot record video of Pendulum-v1"):
        RecordVideo(gym.make("Pendulum-v1"), "unused", episodes=1)


def test_eval_records_videos_through_the_cli(tmp_path, gl):
    run = tmp_path / "run"
    robot_rl(
        "train",
        f"run_dir={run}",
        "num_demos=1",
        "steps=40",
        "task.max_steps=20",
        "runtime.learning_starts=10",
        "runtime.eval_episodes=1",
        "runtime.eval_every=100000",
        "agent.batch_size=16",
        "agent.utd=1",
        "agent.compile=false",
        check=True,
    )
    (run / "eval" / "videos").mkdir(parents=True)
    (run / "eval" / "videos" / "episode_007.mp4").write_bytes(b"an earlier eval's")
    proc = robot_rl("eval", f"run_dir={run}", "episodes=3", "video=2", check=True)
    assert "2 video(s)" in proc.stdout
    summary = json.loads((run / "eval" / "summary.json").read_text())
    assert summary["videos"] == ["eval/videos/episode_000.mp4", "eval/videos/episode_001.mp4"]
    assert sorted(p.name for p in (run / "eval" / "videos").iterdir()) == ["episode_000.mp4", "episode_001.mp4"]
    meta = EpisodeLog(run / "episodes.zarr").episode_meta()
    assert list(meta["source"][-3:]) == [EpisodeSource.EVAL] * 3
    for path, length in zip(summary["videos"], meta["length"][-3:-1]):
        assert len(decode(run / path)) == length + 1

    proc = robot_rl("eval", f"run_dir={run}", "video=two")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "video='two' must be an integer >= 0" in lines[0], proc.stderr
