"""RecordVideo: an env wrapper that writes the first N episodes to H.264 mp4 files with a text band.

Torch-free (the deploy path uses it): numpy, gymnasium, Pillow and imageio-ffmpeg (its bundled ffmpeg
binary; nothing is downloaded). Pillow and imageio-ffmpeg are imported when a recorder is built.

Frame layout, top to bottom:
- the picture: the observation's image keys (`image/<camera>`, uint8[H, W, 3]) tiled left to right in
  observation order, each scaled to the same height of at least `min_height` pixels (nearest-neighbour
  at whole multiples: pixels stay sharp) and labelled with its camera name; an env without image
  observations shows its robot's `camera` (default `front`) rendered at `camera_size` (the sim renders any
  size; a real or bridged camera gives its own size, scaled up), else the env's own `render()`;
- a dark text band: episode, step, step reward and return on the first line(s); then SUCCESS (green)
  once the step's StepInfo reports success, the safety layer's actions of the step (amber, from
  StepInfo.safety_actions), and "person" when a person drove the step;
- black padding to even width and height (H.264 yuv420p needs both even).

One frame for the reset observation and one per step: an episode of T steps is T + 1 frames. A file is
written as `episode_<k>.partial.mp4` and renamed to `episode_<k>.mp4` when its episode ends (or at
`close()`, which finishes the episode in progress), so a crash mid-episode leaves the finished files
whole and playable under their final names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.config import UserError
from robot_rl.data.schema import StepInfo

IMAGE_PREFIX = "image/"
BAND_BG = (24, 24, 24)
TEXT = (235, 235, 235)
GREEN = (90, 220, 110)
AMBER = (255, 185, 40)
CYAN = (110, 200, 255)
DEFAULT_FPS = 10.0


def _camera_names(robot) -> tuple[str, ...]:
    names = getattr(robot, "camera_names", ())  # a property on the sim and ROS robots, a method on the rig
    names = names() if callable(names) else names
    return tuple(names or ())


class RecordVideo(gym.Wrapper):
    """Writes the first `episodes` episodes (counted by `reset()`) to `<directory>/episode_<k>.mp4`, k from
    `first_index` (zero-padded to 3 digits). `fps`: frames per second, default 1 / the robot's control_dt
    (real time), else the env's `metadata["render_fps"]`, else 10. `crf`: x264 constant rate factor
    (lower = larger and sharper). `paths`: the finished files, in order."""

    def __init__(
        self,
        env: gym.Env,
        directory: str | os.PathLike,
        episodes: int,
        fps: float | None = None,
        camera: str = "front",
        camera_size: tuple[int, int] = (256, 256),
        min_height: int = 256,
        crf: int = 23,
        first_index: int = 0,
    ) -> None:
        super().__init__(env)
        try:
            import imageio_ffmpeg
            from PIL import Image, ImageDraw, ImageFont
        except ImportError as err:
            raise UserError(
                f"recording videos needs imageio-ffmpeg and pillow ({err}): pip install imageio-ffmpeg pillow"
            ) from None
        if not isinstance(episodes, int) or isinstance(episodes, bool) or episodes < 0:
            raise ValueError(f"video={episodes!r} must be an integer >= 0 (the episodes to record)")
        self._ffmpeg, self._image, self._draw = imageio_ffmpeg, Image, ImageDraw
        self.directory = Path(directory)
        self.episodes = episodes
        self.camera = camera
        self.camera_size = (int(camera_size[0]), int(camera_size[1]))
        self.min_height = int(min_height)
        self.crf = int(crf)
        self.first_index = int(first_index)
        self.fps = float(fps) if fps else self._default_fps()
        self.image_keys = [k for k in self._obs_keys() if k.startswith(IMAGE_PREFIX)]
        self._robot = getattr(env.unwrapped, "robot", None)
        if not self.image_keys:
            self._check_frame_source()
        self._render_size: tuple[int, int] | None = self.camera_size  # None: the camera's own size
        self._font = self._load_font(ImageFont, 14)
        self._label_font = self._load_font(ImageFont, 12)
        self.paths: list[Path] = []
        self._started = 0  # episodes begun (recorded or not)
        self._writer = None
        self._partial: Path | None = None
        self._final: Path | None = None
        self._size: tuple[int, int] | None = None  # (width, height) of the current file's frames
        self._episode = self.first_index
        self._step = 0
        self._return = 0.0
        self._success = False

    # ------------------------------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._finish()  # an episode cut short (the caller reset before it ended) keeps its frames
        obs, info = self.env.reset(seed=seed, options=options)
        index = self._started
        self._started += 1
        self._step, self._return, self._success = 0, 0.0, False
        if index < self.episodes:
            self._open(index)
            self._write(obs, reward=None, step_info=None)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._writer is not None:
            self._step += 1
            self._return += float(reward)
            step_info = info.get("step_info") if isinstance(info, dict) else None
            step_info = step_info if isinstance(step_info, StepInfo) else StepInfo()
            self._success = self._success or bool(step_info.success)
            self._write(obs, float(reward), step_info)
            if terminated or truncated:
                self._finish()
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        try:
            self._finish()
        finally:
            super().close()

    @property
    def recording(self) -> bool:
        """An episode is being written now."""
        return self._writer is not None

    # ----------------------------------------------------------------------------------------- files
    def _open(self, index: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"episode_{self.first_index + index:03d}"
        self._final = self.directory / f"{name}.mp4"
        self._partial = self.directory / f"{name}.partial.mp4"
        self._episode = self.first_index + index
        self._size = None  # set by the first frame

    def _start_writer(self, width: int, height: int) -> None:
        self._size = (width, height)
        self._writer = self._ffmpeg.write_frames(
            str(self._partial),
            (width, height),
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            fps=self.fps,
            codec="libx264",
            quality=None,
            macro_block_size=1,  # frames are padded to even sizes here; no rescaling by ffmpeg
            ffmpeg_log_level="error",
            output_params=["-crf", str(self.crf), "-preset", "medium", "-movflags", "+faststart"],
        )
        self._writer.send(None)

    def _finish(self) -> None:
        """Close the current file (ffmpeg writes the mp4 index) and give it its final name."""
        writer, self._writer = self._writer, None
        if writer is None:
            if self._partial is not None and self._size is None:  # opened, no frame written (reset failed)
                self._partial = self._final = None
            return
        writer.close()  # waits for ffmpeg to finish the file
        partial, final = self._partial, self._final
        self._partial = self._final = None
        if partial is not None and partial.exists() and partial.stat().st_size > 0:
            os.replace(partial, final)
            self.paths.append(final)

    # ---------------------------------------------------------------------------------------- frames
    def _write(self, obs, reward: float | None, step_info: StepInfo | None) -> None:
        frame = self.frame(obs, reward, step_info)
        height, width = frame.shape[:2]
        if self._writer is None:
            self._start_writer(width, height)
        elif (width, height) != self._size:  # a camera changed size mid-episode: fit it into the first size
            frame = _fit(frame, self._size)
        self._writer.send(np.ascontiguousarray(frame))

    def frame(self, obs, reward: float | None = None, step_info: StepInfo | None = None) -> np.ndarray:
        """The video frame (uint8[H, W, 3], even H and W) for an observation and its step's report
        (`reward` None: the reset frame)."""
        picture = self._picture(obs)
        band = self._band(picture.shape[1], reward, step_info)
        frame = np.concatenate([picture, band], axis=0)
        pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
        if pad_h or pad_w:
            frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)))
        return frame

    def _picture(self, obs) -> np.ndarray:
        if self.image_keys:
            tiles = [(key[len(IMAGE_PREFIX) :], np.asarray(obs[key], np.uint8)) for key in self.image_keys]
        else:
            tiles = [(self._source_name, self._render())]
        height = max(self.min_height, max(img.shape[0] for _, img in tiles))
        scaled = []
        for label, img in tiles:
            pil = self._image.fromarray(_rgb(img))
            w, h = pil.size
            if h != height:
                width = max(1, round(w * height / h))
                exact = height % h == 0 and width % w == 0
                pil = pil.resize((width, height), self._image.NEAREST if exact else self._image.BILINEAR)
            if label:
                self._label(pil, label)
            scaled.append(np.asarray(pil))
        return np.concatenate(scaled, axis=1)

    def _label(self, pil, text: str) -> None:
        draw = self._draw.Draw(pil)
        left, top, right, bottom = draw.textbbox((4, 3), text, font=self._label_font)
        draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=(0, 0, 0))
        draw.text((4, 3), text, fill=TEXT, font=self._label_font)

    def _band(self, width: int, reward: float | None, step_info: StepInfo | None) -> np.ndarray:
        counters = f"episode {self._episode}  step {self._step}"
        returns = "reset" if reward is None else f"reward {reward:+.2f}  return {self._return:+.2f}"
        wide = self._text_width("episode 999  step 9999   reward -10.00  return -100.00") <= width - 12
        lines: list[list[tuple[str, tuple[int, int, int]]]] = (
            [[(f"{counters}   {returns}", TEXT)]] if wide else [[(counters, TEXT)], [(returns, TEXT)]]
        )
        status: list[tuple[str, tuple[int, int, int]]] = []
        if self._success:
            status.append(("SUCCESS", GREEN))
        if step_info is not None and step_info.intervention:
            status.append(("person", CYAN))
        if step_info is not None and step_info.safety_actions:
            status.append(("safety: " + " ".join(step_info.safety_actions), AMBER))
        lines.append(status)
        line_h = self._font_height + 4
        band = self._image.new("RGB", (width, 6 + line_h * len(lines)), BAND_BG)
        draw = self._draw.Draw(band)
        for row, parts in enumerate(lines):
            x, y = 6, 4 + row * line_h
            for text, color in parts:
                text = self._clip(text, width - 6 - x)
                if text:
                    draw.text((x, y), text, fill=color, font=self._font)
                    x += self._text_width(text + "  ")
        return np.asarray(band)

    def _clip(self, text: str, room: float) -> str:
        if self._text_width(text) <= room:
            return text
        while text and self._text_width(text + "...") > room:
            text = text[:-1]
        return text + "..." if text else ""

    def _text_width(self, text: str) -> float:
        return float(self._font.getlength(text))

    @property
    def _font_height(self) -> int:
        left, top, right, bottom = self._font.getbbox("Ag|")
        return int(bottom)

    @staticmethod
    def _load_font(ImageFont, size: int):
        try:
            return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
        except (TypeError, ImportError, OSError):
            return ImageFont.load_default()

    # ---------------------------------------------------------------------------------- frame source
    def _obs_keys(self) -> list[str]:
        space = self.env.observation_space
        return list(space.spaces) if isinstance(space, gym.spaces.Dict) else []

    def _check_frame_source(self) -> None:
        robot = self._robot
        if robot is not None and callable(getattr(robot, "render", None)):
            names = _camera_names(robot)
            if names and self.camera not in names:
                raise ValueError(f"video camera {self.camera!r} is not one of the robot's cameras {list(names)}")
            self._source_name = self.camera
            return
        if getattr(self.env, "render_mode", None) == "rgb_array":
            self._source_name = ""
            return
        raise ValueError(
            f"cannot record video of {_env_name(self.env)}: it has no image observation, no robot camera and no "
            "rgb_array rendering (record a robot task, e.g. task=pick_cube or pick_cube_vision)"
        )

    def _render(self) -> np.ndarray:
        robot = self._robot
        if robot is None or not callable(getattr(robot, "render", None)):
            return np.asarray(self.env.render(), np.uint8)
        if self._render_size is not None:
            try:
                return robot.render(self.camera, *self._render_size)
            except ValueError:  # a real or bridged camera renders at its own size only
                self._render_size = None
        size = getattr(robot, "render_size", None)
        return robot.render(self.camera, *size) if size is not None else robot.render(self.camera)

    def _default_fps(self) -> float:
        dt = getattr(getattr(self.env.unwrapped, "robot", None), "control_dt", None)
        if isinstance(dt, (int, float)) and dt > 0:
            return 1.0 / float(dt)
        fps = (getattr(self.env, "metadata", None) or {}).get("render_fps")
        return float(fps) if fps else DEFAULT_FPS


def _env_name(env: gym.Env) -> str:
    spec = getattr(env, "spec", None) or getattr(env.unwrapped, "spec", None)
    return spec.id if spec is not None else type(env.unwrapped).__name__


def _rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def _fit(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`frame` cropped or black-padded to (width, height) `size`."""
    width, height = size
    out = np.zeros((height, width, 3), np.uint8)
    h, w = min(height, frame.shape[0]), min(width, frame.shape[1])
    out[:h, :w] = frame[:h, :w]
    return out
