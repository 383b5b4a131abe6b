"""Cameras for real robots through OpenCV: one capture thread per camera keeps only the latest frame.

Sources (`Camera(source=...)`):
    0, "0", "/dev/video2"          a V4L2 device (USB webcam, RealSense colour node as UVC); prefer the
                                   stable names in /dev/v4l/by-id/, indices move between boots
    "rtsp://...", "http://..."     an IP camera through FFmpeg
    "clip.mp4"                     a video file (tests, replays): read at its own fps (`realtime=True`)
    a callable                     returns an object with grab() -> bool, retrieve() -> (ok, BGR frame)
                                   and release() (e.g. a generated source in tests, a vendor SDK wrapper)

Frames are uint8[H, W, 3] RGB (like MuJoCo renders; `rgb=False` keeps OpenCV's BGR), resized to the
task's (height, width) with INTER_AREA when `size` is given. Each frame is a fresh array that the
capture thread never touches again after publishing it, so `latest()` hands it over without copying and
the caller may keep it; two reads of the same frame return the same array object, so copy it before
writing into it if someone else may read it too.

The thread stamps each frame with `time.monotonic()` when grab() returned; `latest()` returns the
frame and its age, which is what a step logs (`StepInfo.frame_age_s`). A frame older than `max_age`
raises `StaleFrameError`. Counters: frames captured, frames dropped (replaced before anyone read
them: the consumer is slower than the camera, expected and harmless), read failures, reconnects.

Reconnect: when a device or stream fails `max_read_failures` reads in a row, or a video file ends, the
capture is released and reopened after `reconnect_delay` seconds, doubling up to
`reconnect_max_delay` while reopening fails. A video file therefore loops from its first frame after
a gap (like an unplugged and replugged camera); `reconnect=False` stops at its end instead. While
disconnected the last frame ages, so `latest()` raises `StaleFrameError`.

Devices: the requested fourcc (MJPG by default: raw YUYV at 640x480@30 fills a USB 2 bus on its
own), width, height and fps are set in that order (V4L2 offers the large MJPG modes only once MJPG
is selected); what the device accepted is read back, logged when it differs and shown in
`stats().mode`. Files ignore them (`fps` paces a file instead of its own rate).
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from robot_rl.config import UserError, one_line

log = logging.getLogger(__name__)

STREAM_TIMEOUT_MS = 5000  # open and read timeouts of network streams (FFmpeg)


class CameraError(UserError):
    """A camera problem a person can act on: one line naming the camera and the fix."""


class StaleFrameError(CameraError):
    """The newest frame is older than the allowed maximum age (or there is none yet)."""


class Capture(Protocol):
    """What the capture thread needs of a source: cv2.VideoCapture's grab/retrieve/release."""

    def grab(self) -> bool: ...

    def retrieve(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


class Frame(NamedTuple):
    """One frame as handed to a consumer."""

    image: np.ndarray  # uint8[H, W, 3], RGB unless the camera has rgb=False
    stamp: float  # time.monotonic() when grab() returned
    index: int  # 1-based number of the frame among all this camera captured (across reconnects)
    age_s: float  # time.monotonic() - stamp when it was handed out


@dataclass(frozen=True)
class CameraStats:
    """A camera's counters at one moment."""

    frames: int  # frames captured
    dropped: int  # frames replaced by a newer one before anyone read them
    read_failures: int  # failed grab()/retrieve() calls (a video file's end is not one)
    reconnects: int  # successful reopens after the source went away
    connected: bool
    age_s: float  # age of the newest frame now; inf before the first
    fps: float  # measured capture rate (smoothed); 0 before two frames
    mode: str  # what the source delivers, e.g. "640x480@30 MJPG"; "" before it opened


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise CameraError("OpenCV is not installed: pip install 'robot_rl[hardware]'") from None
    return cv2


def _fourcc_text(code: float) -> str:
    text = int(code).to_bytes(4, "little").decode("ascii", "replace")
    return text if text.isprintable() and text.strip("\x00") else "?"


def _video_devices() -> list[str]:
    return sorted(glob.glob("/dev/video*"), key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p)])


def _device_problem(path: str) -> str | None:
    """Why the V4L2 device `path` cannot be opened, as one line naming the fix; None if no reason is visible."""
    if not os.path.exists(path):
        found = _video_devices()
        if found:
            return f"{path} does not exist; video devices here: {', '.join(found)} (v4l2-ctl --list-devices names them)"
        return f"{path} does not exist and there is no /dev/video* device: plug the camera in and check lsusb"
    if not os.access(path, os.R_OK | os.W_OK):
        return (
            f"permission denied on {path}: add your user to the 'video' group "
            "(sudo usermod -aG video $USER, then log in again)"
        )
    return None


def _check_size(name: str, size: Iterable[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise CameraError(f"camera '{name}': size must be (height, width), got {size!r}") from None
    if h <= 0 or w <= 0:
        raise CameraError(f"camera '{name}': size must be positive (height, width), got {size!r}")
    return h, w


class Camera:
    """One camera: a daemon thread grabs frames and keeps only the newest with its monotonic stamp.

    `with Camera("/dev/video0", name="wrist", size=(128, 128)) as cam: image, age = cam.latest()`
    """

    def __init__(
        self,
        source: int | str | os.PathLike[str] | Callable[[], Capture],
        *,
        name: str = "camera",
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        fourcc: str | None = "MJPG",
        size: Iterable[int] | None = None,
        rgb: bool = True,
        max_age: float | None = 0.25,
        realtime: bool = True,
        reconnect: bool = True,
        reconnect_delay: float = 0.25,
        reconnect_max_delay: float = 4.0,
        max_read_failures: int = 5,
    ) -> None:
        """`width`/`height`/`fps`/`fourcc`: requested from a device (`fourcc=None` keeps the device's);
        `size`: output (height, width); `max_age`: default for `latest()` in seconds, None for no check;
        `realtime`: read a video file at its fps rather than as fast as it decodes."""
        self.name = str(name)
        self.size = _check_size(self.name, size)
        if fourcc is not None and len(fourcc) != 4:
            raise CameraError(f"camera '{self.name}': fourcc must be 4 characters (e.g. MJPG, YUYV), got {fourcc!r}")
        if max_age is not None and not max_age > 0:
            raise CameraError(f"camera '{self.name}': max_age must be > 0 seconds or None, got {max_age!r}")
        if reconnect_delay < 0 or reconnect_max_delay < reconnect_delay or max_read_failures < 1:
            raise CameraError(
                f"camera '{self.name}': need 0 <= reconnect_delay <= reconnect_max_delay and max_read_failures >= 1"
            )
        self.source = source
        self.kind, self._target = self._classify(source)
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self.rgb, self.max_age, self.realtime = bool(rgb), max_age, bool(realtime)
        self.reconnect, self.reconnect_delay = bool(reconnect), float(reconnect_delay)
        self.reconnect_max_delay = float(reconnect_max_delay)
        self.max_read_failures = int(max_read_failures)

        self._cond = threading.Condition()  # guards everything below that the thread and consumers share
        self._image: np.ndarray | None = None
        self._stamp = -math.inf
        self._index = 0
        self._unread = False
        self._frames = self._dropped = self._read_failures = self._reconnects = 0
        self._connected = False
        self._interval = 0.0
        self._mode = ""
        self._error: BaseException | None = None  # what killed the thread, re-raised to consumers
        self._ended = False  # the source ended and reconnect is off
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._cap: Capture | None = None  # owned by the capture thread once it runs
        self._file_fps = 0.0

    def __repr__(self) -> str:
        return f"Camera({self.name!r}, source={self.source!r})"

    # ---- opening --------------------------------------------------------------------------------------

    @staticmethod
    def _classify(source: Any) -> tuple[str, Any]:
        if callable(source):
            return "custom", source
        if isinstance(source, bool):
            raise CameraError(f"camera source must be an index, a path, a URL or a callable, got {source!r}")
        if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
            return "device", int(source)
        text = str(source)
        if "://" in text:
            return "url", text
        if text.startswith("/dev/"):
            return "device", text
        return "file", os.path.expanduser(text)

    def _where(self) -> str:
        if self.kind == "device" and isinstance(self._target, int):
            return f"/dev/video{self._target}" if sys.platform.startswith("linux") else f"camera index {self._target}"
        return str(self._target) if self.kind != "custom" else "its source"

    def _open(self) -> Capture:
        """Open the source and configure it; raise CameraError naming the fix when it cannot be opened."""
        who = f"camera '{self.name}'"
        if self.kind == "custom":
            try:
                cap = self._target()
            except Exception as err:  # a vendor SDK that raises while the camera is unplugged: retried
                raise CameraError(f"{who}: its source failed to open: {one_line(err)}") from err
            if cap is None or (hasattr(cap, "isOpened") and not cap.isOpened()):
                raise CameraError(f"{who}: its source callable returned no open capture")
            self._set_mode("custom")
            return cap
        cv2 = _cv2()
        if self.kind == "file":
            if not os.path.isfile(self._target):
                raise CameraError(f"{who}: video file {self._target} does not exist")
            cap = cv2.VideoCapture(self._target)
            if not cap.isOpened():
                cap.release()
                raise CameraError(f"{who}: OpenCV cannot decode {self._target}: re-encode it (ffmpeg -i in out.mp4)")
            self._file_fps = float(self.fps or cap.get(cv2.CAP_PROP_FPS) or 30.0)
            self._set_mode(self._describe(cv2, cap, "file"))
            return cap
        if self.kind == "url":
            ms = STREAM_TIMEOUT_MS
            timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            cap = cv2.VideoCapture(self._target, cv2.CAP_FFMPEG, timeouts)
            if not cap.isOpened():
                cap.release()
                raise CameraError(
                    f"{who}: cannot open stream {self._target}: check the address, credentials and that the camera "
                    f"is reachable (ffplay '{self._target}')"
                )
            self._set_mode(self._describe(cv2, cap, "stream"))
            return cap
        linux = sys.platform.startswith("linux")
        path = self._where()
        if linux and (problem := _device_problem(path)):
            raise CameraError(f"{who}: {problem}")
        cap = cv2.VideoCapture(self._target, cv2.CAP_V4L2 if linux else cv2.CAP_ANY)
        if not cap.isOpened():
            cap.release()
            raise CameraError(
                f"{who}: cannot open {path}: another program may hold it (fuser {path}) or it is not a capture node "
                "(v4l2-ctl --list-devices; a RealSense has several, one is the colour stream)"
            )
        self._configure(cv2, cap)
        return cap

    def _configure(self, cv2: Any, cap: Any) -> None:
        """Request fourcc, then size, then fps (V4L2 lists the large MJPG modes only once MJPG is set)."""
        if self.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        got_w, got_h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        got_fps, got_cc = cap.get(cv2.CAP_PROP_FPS), _fourcc_text(cap.get(cv2.CAP_PROP_FOURCC))
        mode = f"{got_w}x{got_h}@{got_fps:g} {got_cc}"
        wanted = f"{self.width or '*'}x{self.height or '*'}@{self.fps or '*'} {self.fourcc or '*'}"
        if (
            (self.width and got_w != self.width)
            or (self.height and got_h != self.height)
            or (self.fps and abs(got_fps - self.fps) > 0.5)
            or (self.fourcc and got_cc != self.fourcc)
        ) and mode != self._mode:
            log.warning(
                "camera '%s': asked %s, the device gives %s (v4l2-ctl --list-formats-ext -d %s lists its modes)",
                self.name,
                wanted,
                mode,
                self._where(),
            )
        self._set_mode(mode)

    @staticmethod
    def _describe(cv2: Any, cap: Any, kind: str) -> str:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        return f"{w}x{h}@{cap.get(cv2.CAP_PROP_FPS):g} {kind}"

    def _set_mode(self, mode: str) -> None:
        with self._cond:
            self._mode = mode

    # ---- life cycle -----------------------------------------------------------------------------------

    def start(self) -> Camera:
        """Open the source (raising CameraError with the fix if it cannot) and start the capture thread."""
        if self._closed:
            raise CameraError(f"camera '{self.name}' is closed: make a new Camera")
        if self._thread is not None:
            return self
        self._cap = self._open()
        with self._cond:
            self._connected = True
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread and release the source; waits up to `timeout` s for the thread (a device
        blocked in grab() releases itself when grab() returns). Idempotent."""
        self._stop.set()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        thread = self._thread
        if thread is None:
            return
        if thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("camera '%s': capture thread still blocked in grab() after %.1f s", self.name, timeout)

    def __enter__(self) -> Camera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """Whether the capture thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # ---- the capture thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as err:  # handed to the consumers, which raise it
            log.exception("camera '%s': capture thread failed", self.name)
            with self._cond:
                self._error = err
                self._cond.notify_all()
        finally:
            if self._cap is not None:
                self._cap.release()
                self._cap = None
            with self._cond:
                self._connected = False

    def _loop(self) -> None:
        cv2 = None if self.kind == "custom" else _cv2()
        failures = 0
        next_due = 0.0  # pacing of a video file: monotonic time its next frame is due
        while not self._stop.is_set():
            if self._cap is None:
                if not self._reopen():
                    return
                failures, next_due = 0, 0.0
                continue
            if self.kind == "file" and self.realtime:  # pace a file at its fps; never burst to catch up
                if next_due and self._stop.wait(max(next_due - time.monotonic(), 0.0)):
                    return
                now, period = time.monotonic(), 1.0 / self._file_fps
                next_due = max(next_due or now, now - period) + period
            ok = self._cap.grab()
            stamp = time.monotonic()
            image = None
            if ok:
                ok, image = self._cap.retrieve()
            if not ok or image is None:
                if self.kind == "file":  # the file ended: the source went away
                    self._lose("the video file ended")
                    continue
                failures += 1
                with self._cond:
                    self._read_failures += 1
                if failures >= self.max_read_failures:
                    self._lose(f"{failures} reads failed in a row")
                continue
            failures = 0
            self._publish(self._convert(cv2, image), stamp)

    def _convert(self, cv2: Any, image: np.ndarray) -> np.ndarray:
        if cv2 is None:
            cv2 = _cv2()
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if self.size is not None and image.shape[:2] != self.size:
            image = cv2.resize(image, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        if self.rgb:
            return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # a new array: the consumer owns it
        return image.copy() if self.kind == "custom" else image  # cv2 retrieve() allocates a new array per frame

    def _publish(self, image: np.ndarray, stamp: float) -> None:
        with self._cond:
            if self._unread:
                self._dropped += 1
            if self._index and stamp > self._stamp:  # smoothed frame interval (robust to jitter)
                interval = stamp - self._stamp
                self._interval = interval if not self._interval else 0.9 * self._interval + 0.1 * interval
            self._image, self._stamp, self._unread = image, stamp, True
            self._index += 1
            self._frames += 1
            self._cond.notify_all()

    def _lose(self, why: str) -> None:
        """Release the source; the loop reopens it (or ends when reconnect is off)."""
        assert self._cap is not None
        self._cap.release()
        self._cap = None
        with self._cond:
            self._connected = False
        if self.kind == "file":
            log.info("camera '%s': %s%s", self.name, why, ", reopening it" if self.reconnect else "")
        else:
            log.warning("camera '%s' lost (%s)%s", self.name, why, ", reconnecting" if self.reconnect else "")

    def _reopen(self) -> bool:
        """Reopen with exponential backoff until it works (True) or the camera closes (False)."""
        if not self.reconnect:
            with self._cond:
                self._ended = True
                self._cond.notify_all()
            return False
        delay, since, reported = self.reconnect_delay, time.monotonic(), False
        while not self._stop.wait(delay):
            try:
                cap = self._open()
            except CameraError as err:
                if not reported:
                    log.warning("%s (retrying every <= %.1f s)", err, self.reconnect_max_delay)
                    reported = True
                delay = min(max(2 * delay, 0.05), self.reconnect_max_delay)
                continue
            if self._stop.is_set():
                cap.release()
                return False
            self._cap = cap
            with self._cond:
                self._connected = True
                self._reconnects += 1
            if self.kind != "file":
                log.warning("camera '%s' reconnected after %.1f s", self.name, time.monotonic() - since)
            return True
        return False

    # ---- consumers ------------------------------------------------------------------------------------

    def frame(self, max_age: float | None = None) -> Frame:
        """The newest frame with its stamp, index and age; raises StaleFrameError when it is older than
        `max_age` (default: the camera's `max_age`; `math.inf` disables the check) or there is none."""
        limit = self.max_age if max_age is None else max_age
        with self._cond:
            self._raise_if_broken()
            now = time.monotonic()
            age = now - self._stamp
            if self._image is None:
                raise StaleFrameError(f"camera '{self.name}' has no frame yet: {self._hint_no_frame()}")
            if limit is not None and age > limit:
                raise StaleFrameError(
                    f"camera '{self.name}' frame is {age:.2f} s old (max_age {limit:g} s{self._state_note()}): "
                    "check the cable and USB bandwidth (fewer cameras per bus, MJPG, lower fps or resolution)"
                    " or raise max_age"
                )
            self._unread = False
            return Frame(self._image, self._stamp, self._index, age)

    def peek(self) -> Frame | None:
        """The newest frame without taking it (a monitor's view: the drop counter still counts it as
        unread for the consumer); None before the first."""
        with self._cond:
            if self._image is None:
                return None
            return Frame(self._image, self._stamp, self._index, time.monotonic() - self._stamp)

    def latest(self, max_age: float | None = None) -> tuple[np.ndarray, float]:
        """`(image, age_s)` of the newest frame; see `frame()` for `max_age` and errors."""
        frame = self.frame(max_age)
        return frame.image, frame.age_s

    def wait_first(self, timeout: float = 5.0) -> tuple[np.ndarray, float]:
        """Block until the first frame arrives and return `(image, age_s)`; CameraError after `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._image is None:
                self._raise_if_broken()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CameraError(
                        f"camera '{self.name}' gave no frame within {timeout:g} s: {self._hint_no_frame()}"
                    )
                self._cond.wait(left)
        return self.latest(math.inf)

    def wait_newer(self, stamp: float, timeout: float = 1.0) -> Frame:
        """Block until a frame grabbed after monotonic time `stamp` arrives and return it: e.g. the first
        frame after a reset settled (`time.monotonic()`) or the next one (`cam.frame().stamp`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._stamp <= stamp:
                self._raise_if_broken()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StaleFrameError(
                        f"camera '{self.name}' gave no new frame within {timeout:g} s{self._state_note()}: "
                        "check the cable and USB bandwidth"
                    )
                self._cond.wait(left)
        return self.frame(math.inf)

    def stats(self) -> CameraStats:
        """The counters now."""
        with self._cond:
            return CameraStats(
                frames=self._frames,
                dropped=self._dropped,
                read_failures=self._read_failures,
                reconnects=self._reconnects,
                connected=self._connected,
                age_s=time.monotonic() - self._stamp,
                fps=1.0 / self._interval if self._interval else 0.0,
                mode=self._mode,
            )

    def _raise_if_broken(self) -> None:
        if self._error is not None:
            raise CameraError(f"camera '{self.name}' capture thread failed: {self._error!r}") from self._error
        if self._closed:
            raise CameraError(f"camera '{self.name}' is closed")
        if self._thread is None:
            raise CameraError(f"camera '{self.name}' is not started: call start() or use it in a with block")

    def _state_note(self) -> str:
        if self._ended:
            return "; its source ended and reconnect is off"
        if not self._connected:
            return f"; disconnected, reconnecting, {self._reconnects} reconnects so far"
        return ""

    def _hint_no_frame(self) -> str:
        if self._ended:
            return "its source ended before the first frame"
        if self.kind == "device":
            where = self._where()
            return (
                f"check that {where} streams (ffplay {where}) in a mode it supports "
                f"(v4l2-ctl --list-formats-ext -d {where}){self._state_note()}"
            )
        return f"check that {self._where()} delivers frames{self._state_note()}"


class CameraSet:
    """Several named cameras started, read and closed together, for `image/<camera>` observations."""

    def __init__(self, cameras: Iterable[Camera]) -> None:
        self.cameras: dict[str, Camera] = {}
        for cam in cameras:
            if cam.name in self.cameras:
                raise CameraError(f"two cameras are named '{cam.name}': give each a distinct name")
            self.cameras[cam.name] = cam

    @classmethod
    def from_config(cls, config: Mapping[str, Mapping[str, Any]], **defaults: Any) -> CameraSet:
        """`{name: {source: ..., other Camera keywords}}`; `defaults` apply to every camera (e.g. size)."""
        cams = []
        for name, cfg in config.items():
            cfg = dict(cfg)
            if "source" not in cfg:
                raise CameraError(f"camera '{name}' has no source: set cameras.{name}.source (e.g. /dev/video0)")
            cams.append(Camera(cfg.pop("source"), **{**defaults, **cfg, "name": name}))
        return cls(cams)

    @property
    def names(self) -> list[str]:
        """Camera names in order."""
        return list(self.cameras)

    def __getitem__(self, name: str) -> Camera:
        return self.cameras[name]

    def __iter__(self) -> Iterator[Camera]:
        return iter(self.cameras.values())

    def __len__(self) -> int:
        return len(self.cameras)

    def start(self, wait_first: float | None = None) -> CameraSet:
        """Start every camera (closing those started if one fails); with `wait_first`, also wait up to
        that many seconds for each camera's first frame."""
        try:
            for cam in self:
                cam.start()
            if wait_first is not None:
                deadline = time.monotonic() + wait_first
                for cam in self:
                    cam.wait_first(max(deadline - time.monotonic(), 0.0))
        except BaseException:
            self.close()
            raise
        return self

    def frames(self, max_age: float | None = None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """`({name: image}, {name: age_s})` of each camera's newest frame; one StaleFrameError naming every
        camera that is stale (`max_age` as in `Camera.frame`)."""
        images, ages, stale = {}, {}, []
        for name, cam in self.cameras.items():
            try:
                images[name], ages[name] = cam.latest(max_age)
            except StaleFrameError as err:
                stale.append(str(err))
        if len(stale) == 1:
            raise StaleFrameError(stale[0])
        if stale:
            raise StaleFrameError(f"{len(stale)} cameras stale: " + "; ".join(stale))
        return images, ages

    def observation(self, max_age: float | None = None) -> tuple[dict[str, np.ndarray], float]:
        """`({"image/<name>": image}, oldest age_s)`: the images of an observation and the frame age
        its step logs (`StepInfo.frame_age_s`)."""
        images, ages = self.frames(max_age)
        return {f"image/{k}": v for k, v in images.items()}, max(ages.values(), default=float("nan"))

    def stats(self) -> dict[str, CameraStats]:
        """Each camera's counters."""
        return {name: cam.stats() for name, cam in self.cameras.items()}

    def close(self) -> None:
        """Close every camera (joins their threads)."""
        for cam in self:
            cam.close()

    def __enter__(self) -> CameraSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
