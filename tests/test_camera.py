"""Cameras through OpenCV (robot_rl.hardware.camera): latest-frame thread, ages, stale frames,
reconnects, errors and CameraSet, on video files written by cv2.VideoWriter and generated frames.

Frame i of every source shows i as a solid colour in its top half (decoded by `index_of`) and pure red
in its bottom half (to check the channel order)."""

from __future__ import annotations

import math
import os
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed (pip install 'robot_rl[hardware]')")

from robot_rl.hardware import camera as camera_mod  # noqa: E402
from robot_rl.hardware.camera import Camera, CameraError, CameraSet, StaleFrameError  # noqa: E402

H, W = 48, 64


def bgr_frame(i: int, h: int = H, w: int = W) -> np.ndarray:
    """Frame i in OpenCV's BGR order: top half encodes i in blue (low 4 bits) and green (high 4 bits)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = ((i % 16) * 16 + 8, (i // 16) * 16 + 8, 0)
    img[h // 2 :] = (0, 0, 255)
    return img


def index_of(rgb: np.ndarray) -> int:
    """The frame index encoded in an RGB frame (any size)."""
    h, w = rgb.shape[:2]
    patch = rgb[h // 8 : 3 * h // 8, w // 4 : 3 * w // 4].reshape(-1, 3).mean(0)
    blue, green = patch[2], patch[1]
    return int(round((blue - 8) / 16)) + 16 * int(round((green - 8) / 16))


def red_pixel(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return rgb[3 * h // 4, w // 2].astype(int)


def write_video(path: Path, n: int, fps: float, fourcc: str = "MJPG") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    assert writer.isOpened(), f"cv2.VideoWriter cannot write {fourcc} to {path}"
    for i in range(n):
        writer.write(bgr_frame(i % 256))
    writer.release()
    return path


class Generated:
    """A camera made of generated frames at `fps`; `pause` stops it producing (grab() fails after 50 ms,
    like a V4L2 read timeout), `fail` makes reads fail at once, `unplugged` makes opening raise."""

    def __init__(self, fps: float = 50.0) -> None:
        self.fps = fps
        self.producing = threading.Event()
        self.producing.set()
        self.fail = False
        self.unplugged = False
        self.opens = 0
        self.count = 0  # frames handed out
        self.grabbed_at: list[float] = []  # monotonic time each successful grab() returned

    def pause(self) -> None:
        self.producing.clear()

    def resume(self) -> None:
        self.producing.set()

    def __call__(self) -> _GeneratedCapture:
        if self.unplugged:
            raise OSError("no such device")
        self.opens += 1
        return _GeneratedCapture(self)


class _GeneratedCapture:
    def __init__(self, gen: Generated) -> None:
        self.gen, self.due = gen, time.monotonic()

    def grab(self) -> bool:
        if self.gen.fail:
            time.sleep(0.005)
            return False
        if not self.gen.producing.wait(0.05):
            return False
        time.sleep(max(self.due - time.monotonic(), 0.0))
        now, period = time.monotonic(), 1.0 / self.gen.fps
        self.due = max(self.due, now - period) + period
        self.gen.grabbed_at.append(time.monotonic())
        return True

    def retrieve(self) -> tuple[bool, np.ndarray]:
        image = bgr_frame(self.gen.count % 256)
        self.gen.count += 1
        return True, image

    def release(self) -> None:
        pass


def wait_until(predicate, timeout: float = 3.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def camera_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("camera-")]


@pytest.fixture(autouse=True)
def no_leaked_threads():
    yield
    assert camera_threads() == [], "a test left a camera thread running"


def test_file_frames_are_rgb_resized_and_in_order(tmp_path):
    video = write_video(tmp_path / "clip.avi", 8, fps=100)
    with Camera(video, name="front", size=(24, 32), reconnect=False) as cam:
        image, age = cam.wait_first(timeout=5)
        assert image.shape == (24, 32, 3) and image.dtype == np.uint8
        assert index_of(image) == 0 and 0 <= age < 1
        assert np.abs(red_pixel(image) - (255, 0, 0)).max() < 24  # RGB: red first
        seen = [index_of(cam.wait_newer(cam.frame(math.inf).stamp).image) for _ in range(4)]
        assert seen == [1, 2, 3, 4]  # pacing at 100 fps leaves time to read every frame in order
        assert cam.stats().mode.startswith(f"{W}x{H}@100 ")

    with Camera(video, name="bgr", size=(30, 20), rgb=False, reconnect=False) as cam:
        image, _ = cam.wait_first(timeout=5)
        assert image.shape == (30, 20, 3)
        assert np.abs(red_pixel(image) - (0, 0, 255)).max() < 24  # BGR kept: red last
    with Camera(video, reconnect=False) as cam:  # no size: the file's own
        assert cam.wait_first(timeout=5)[0].shape == (H, W, 3)


def test_slow_consumer_gets_the_newest_frame_and_drops_are_counted(tmp_path):
    fps = 40.0
    video = write_video(tmp_path / "clip.mp4", 200, fps=fps, fourcc="mp4v")
    reads = []
    with Camera(video, name="front", reconnect=False, max_age=0.5) as cam:
        cam.wait_first(timeout=5)
        t0 = time.monotonic()
        first = cam.frame(math.inf).index
        for _ in range(5):
            time.sleep(0.2)
            frame = cam.frame()
            reads.append(frame)
            # the frame counter and the picture agree: the newest frame, not a queued one
            assert index_of(frame.image) == frame.index - 1
            assert frame.age_s <= 0.15
        elapsed = time.monotonic() - t0
        kept = reads[0].image.copy()
        stats = cam.stats()
    indices = [f.index for f in reads]
    assert all(b - a >= 4 for a, b in zip(indices, indices[1:])), indices  # ~8 frames apart at 40 fps
    # paced at the file's fps, not decoded as fast as possible (200 frames would take milliseconds)
    assert indices[-1] - first <= elapsed * fps + 3, (indices, elapsed)
    assert stats.frames >= indices[-1]
    # every captured frame was either read (wait_first + 5 distinct reads), dropped, or is the unread newest
    read = 1 + len(set(indices))
    assert stats.frames - read - stats.dropped in (0, 1), (stats, read)
    assert stats.dropped >= indices[-1] - read
    assert stats.read_failures == 0 and stats.reconnects == 0
    assert 0.6 * fps < stats.fps < 1.4 * fps
    assert np.array_equal(reads[0].image, kept)  # the thread never writes into a frame it handed out


def test_stamps_are_monotonic_and_age_is_now_minus_stamp():
    gen = Generated(fps=50)
    with Camera(gen, name="wrist", max_age=0.5) as cam:
        cam.wait_first(timeout=5)
        stamps = []
        for _ in range(10):
            before = time.monotonic()
            frame = cam.frame()
            after = time.monotonic()
            assert before - frame.stamp <= frame.age_s <= after - frame.stamp
            # stamped when grab() returned (not before it blocked, nor after decoding and conversion)
            assert 0 <= frame.stamp - gen.grabbed_at[frame.index - 1] < 0.05
            stamps.append(frame.stamp)
            time.sleep(0.013)
        nxt = cam.wait_newer(stamps[-1], timeout=1)
    assert all(b >= a for a, b in zip(stamps, stamps[1:])) and stamps[-1] > stamps[0]
    assert nxt.stamp > stamps[-1] and nxt.age_s < 0.1
    intervals = np.diff(sorted(set(stamps)))
    assert intervals.min() > 0.5 / 50  # stamps of distinct frames are about one period apart, never bunched


def test_stale_frame_is_refused_with_a_one_line_fix_and_recovers():
    gen = Generated(fps=50)
    with Camera(gen, name="wrist", max_age=0.25, max_read_failures=10_000) as cam:
        cam.wait_first(timeout=5)
        gen.pause()
        time.sleep(0.4)
        with pytest.raises(StaleFrameError) as err:
            cam.latest()
        msg = str(err.value)
        assert "\n" not in msg
        assert re.fullmatch(
            r"camera 'wrist' frame is 0\.[3-9]\d s old \(max_age 0\.25 s\): check the cable and USB bandwidth .*", msg
        ), msg
        with pytest.raises(StaleFrameError):
            cam.latest(max_age=0.1)
        old, age = cam.latest(max_age=math.inf)  # an explicit larger limit still reads it
        assert age > 0.3
        assert cam.stats().read_failures >= 3  # grab() timed out while the source paused
        gen.resume()
        frame = cam.wait_newer(time.monotonic(), timeout=1)
        assert frame.age_s < 0.25 and index_of(frame.image) > index_of(old)
        assert cam.stats().reconnects == 0


def test_video_file_end_reconnects_and_frames_resume(tmp_path):
    video = write_video(tmp_path / "short.avi", 10, fps=50)  # 0.2 s long
    with Camera(video, name="front", max_age=0.1, reconnect_delay=0.4) as cam:
        cam.wait_first(timeout=5)
        wait_until(lambda: not cam.stats().connected, what="the file to end")
        time.sleep(0.15)
        with pytest.raises(StaleFrameError, match=r"disconnected, reconnecting, 0 reconnects so far\):"):
            cam.latest()
        ended = cam.frame(math.inf)
        assert index_of(ended.image) == 9 and ended.index == 10
        wait_until(lambda: cam.stats().reconnects == 1, what="the reopen")
        frame = cam.wait_newer(ended.stamp, timeout=2)
        assert index_of(frame.image) <= 3  # the file plays again from its start (it ended at 9)
        assert frame.stamp - ended.stamp >= 0.4  # after the backoff
        stats = cam.stats()
        assert stats.connected and stats.read_failures == 0  # a file's end is no read failure


def test_source_end_without_reconnect_ends_the_thread(tmp_path):
    video = write_video(tmp_path / "short.avi", 5, fps=100)
    cam = Camera(video, name="front", reconnect=False, max_age=0.05).start()
    try:
        cam.wait_first(timeout=5)
        wait_until(lambda: not cam.running, what="the thread to end")
        time.sleep(0.06)
        with pytest.raises(StaleFrameError, match="its source ended and reconnect is off"):
            cam.latest()
        assert cam.stats().frames == 5 and cam.stats().reconnects == 0
    finally:
        cam.close()


def test_failing_reads_and_unplugged_source_reconnect_with_backoff():
    gen = Generated(fps=100)
    with Camera(gen, name="usb", max_read_failures=3, reconnect_delay=0.02, reconnect_max_delay=0.1) as cam:
        cam.wait_first(timeout=5)
        gen.unplugged = True  # reopening raises until plugged back
        gen.fail = True
        wait_until(lambda: cam.stats().read_failures >= 3 and not cam.stats().connected, what="the loss")
        time.sleep(0.3)  # several reopen attempts with growing delays
        assert cam.stats().reconnects == 0 and gen.opens == 1
        gen.unplugged, gen.fail = False, False
        wait_until(lambda: cam.stats().reconnects == 1, what="the reconnect")
        stamp = time.monotonic()
        frame = cam.wait_newer(stamp, timeout=1)
        assert frame.stamp > stamp
        stats = cam.stats()
        assert stats.connected and gen.opens == 2 and stats.read_failures == 3


class FakeDevice:
    """A V4L2 webcam behind cv2.VideoCapture: offers YUYV 640x480@30 and, only once MJPG is selected,
    MJPG up to 1280x720@30; records the properties set in order."""

    def __init__(self, target, api, mjpg: bool = True) -> None:
        self.target, self.api, self.mjpg, self.calls = target, api, mjpg, []
        self.props = {cv2.CAP_PROP_FOURCC: float(cv2.VideoWriter_fourcc(*"YUYV")), cv2.CAP_PROP_FPS: 30.0}
        self.props.update({cv2.CAP_PROP_FRAME_WIDTH: 640.0, cv2.CAP_PROP_FRAME_HEIGHT: 480.0})

    def isOpened(self) -> bool:
        return True

    def set(self, prop: int, value: float) -> bool:
        self.calls.append(prop)
        if prop == cv2.CAP_PROP_FOURCC and not self.mjpg:
            return False
        big = _fourcc(self.props[cv2.CAP_PROP_FOURCC]) == "MJPG"
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            value = min(value, 1280 if big else 640)
        if prop == cv2.CAP_PROP_FRAME_HEIGHT:
            value = min(value, 720 if big else 480)
        if prop == cv2.CAP_PROP_FPS:
            value = min(value, 30)
        self.props[prop] = float(value)
        return True

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def grab(self) -> bool:
        time.sleep(1 / 30)
        return True

    def retrieve(self):
        h, w = int(self.props[cv2.CAP_PROP_FRAME_HEIGHT]), int(self.props[cv2.CAP_PROP_FRAME_WIDTH])
        return True, bgr_frame(3, h, w)

    def release(self) -> None:
        pass


def _fourcc(code: float) -> str:
    return int(code).to_bytes(4, "little").decode()


def test_device_gets_mjpg_then_size_then_fps_and_a_refusal_is_logged(monkeypatch, caplog):
    devices = []
    monkeypatch.setattr(camera_mod, "_device_problem", lambda path: None)
    monkeypatch.setattr(cv2, "VideoCapture", lambda *a: devices.append(FakeDevice(*a)) or devices[-1])
    with Camera(2, name="wrist", width=1280, height=720, fps=60, size=(96, 128)) as cam:
        image, _ = cam.wait_first(timeout=5)
        assert image.shape == (96, 128, 3) and index_of(image) == 3
        mode = cam.stats().mode
    (dev,) = devices
    assert dev.target == 2 and dev.api == (cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY)
    order = [cv2.CAP_PROP_FOURCC, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS]
    assert dev.calls == order  # MJPG first: the 1280x720 mode exists only in MJPG
    assert mode == "1280x720@30 MJPG"
    assert "asked 1280x720@60 MJPG, the device gives 1280x720@30 MJPG" in caplog.text  # fps refused

    caplog.clear()
    monkeypatch.setattr(cv2, "VideoCapture", lambda *a: devices.append(FakeDevice(*a, mjpg=False)) or devices[-1])
    with Camera("/dev/video2", name="old", width=1280, height=720) as cam:
        cam.wait_first(timeout=5)
        assert cam.stats().mode == "640x480@30 YUYV"
    assert devices[-1].target == "/dev/video2"
    assert "camera 'old': asked 1280x720@* MJPG, the device gives 640x480@30 YUYV" in caplog.text
    with Camera(0, fourcc=None) as cam:  # fourcc=None leaves the device's format alone
        cam.wait_first(timeout=5)
    assert cv2.CAP_PROP_FOURCC not in devices[-1].calls


def test_missing_device_errors_name_the_fix(tmp_path, monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("V4L2 device checks are Linux-only")
    monkeypatch.setattr(camera_mod, "_video_devices", lambda: ["/dev/video0", "/dev/video2"])
    with pytest.raises(CameraError) as err:
        Camera(97, name="wrist").start()
    assert str(err.value) == (
        "camera 'wrist': /dev/video97 does not exist; video devices here: /dev/video0, /dev/video2 "
        "(v4l2-ctl --list-devices names them)"
    )
    monkeypatch.setattr(camera_mod, "_video_devices", lambda: [])
    with pytest.raises(CameraError, match=r"^camera 'a': /dev/video97 does not exist and there is no /dev/video\*"):
        Camera("/dev/video97", name="a").start()

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if path == "/dev/null" else real_access(path, mode))
    with pytest.raises(CameraError, match=r"^camera 'b': permission denied on /dev/null: add your user to the 'video'"):
        Camera("/dev/null", name="b").start()
    monkeypatch.undo()
    with pytest.raises(CameraError, match=r"^camera 'c': cannot open /dev/null: another program may hold it"):
        Camera("/dev/null", name="c").start()
    with pytest.raises(CameraError, match=r"^camera 'd': video file .*nothing\.mp4 does not exist$"):
        Camera(tmp_path / "nothing.mp4", name="d").start()


def test_wait_first_times_out_and_misuse_is_explained():
    gen = Generated()
    gen.pause()
    with Camera(gen, name="slow", max_read_failures=10_000) as cam:
        with pytest.raises(StaleFrameError, match="camera 'slow' has no frame yet"):
            cam.latest()
        t0 = time.monotonic()
        with pytest.raises(CameraError, match=r"^camera 'slow' gave no frame within 0\.2 s: check that its source"):
            cam.wait_first(timeout=0.2)
        assert time.monotonic() - t0 < 1
    with pytest.raises(CameraError, match="is closed"):
        cam.latest()
    with pytest.raises(CameraError, match="is not started"):
        Camera(Generated()).latest()
    with pytest.raises(CameraError, match="size must be"):
        Camera(0, size=(0, 10))


def test_a_crashing_source_is_reported_to_the_consumer():
    class Broken(_GeneratedCapture):
        def retrieve(self):
            raise RuntimeError("decoder exploded")

    with Camera(lambda: Broken(Generated()), name="bad") as cam:
        wait_until(lambda: not cam.running, what="the thread to fail")
        with pytest.raises(CameraError, match=r"'bad' capture thread failed: RuntimeError\('decoder exploded'\)"):
            cam.latest()


def test_close_joins_the_thread_promptly(tmp_path):
    video = write_video(tmp_path / "clip.avi", 100, fps=10)  # slow pacing: the thread waits 0.1 s per frame
    gen = Generated()
    for source in (video, gen):
        cam = Camera(source, name="c").start()
        cam.wait_first(timeout=5)
        if source is gen:
            gen.pause()  # blocked in grab()
        t0 = time.monotonic()
        cam.close()
        assert time.monotonic() - t0 < 0.3
        assert not cam.running and camera_threads() == []
        cam.close()  # idempotent
        with pytest.raises(CameraError, match="is closed: make a new Camera"):
            cam.start()


def test_camera_set_reads_starts_and_closes_all(tmp_path):
    video = write_video(tmp_path / "front.avi", 300, fps=50)
    wrist = Generated(fps=50)
    config = {
        "front": {"source": str(video)},
        "wrist": {"source": wrist, "size": (16, 20), "max_read_failures": 10_000},
    }
    with CameraSet.from_config(config, size=(24, 24), max_age=0.2).start(wait_first=5) as cams:
        assert cams.names == ["front", "wrist"] and len(cams) == 2
        assert len(camera_threads()) == 2
        images, ages = cams.frames()
        assert set(images) == set(ages) == {"front", "wrist"}
        assert images["front"].shape == (24, 24, 3) and images["wrist"].shape == (16, 20, 3)  # own size wins
        assert all(0 <= a < 0.2 for a in ages.values())
        obs, age = cams.observation()
        assert set(obs) == {"image/front", "image/wrist"} and 0 <= age < 0.2
        assert obs["image/wrist"].shape == (16, 20, 3)
        assert cams.stats()["wrist"].frames >= 1

        wrist.pause()
        time.sleep(0.3)
        with pytest.raises(StaleFrameError) as err:
            cams.frames()
        assert str(err.value).startswith("camera 'wrist' frame is") and "front" not in str(err.value)
        images, ages = cams.frames(max_age=math.inf)
        assert ages["wrist"] > 0.25 > ages["front"]
        obs, age = cams.observation(max_age=math.inf)
        assert age >= ages["wrist"]  # a step logs the oldest camera's age
        wrist.resume()
    assert camera_threads() == []

    with pytest.raises(CameraError, match="two cameras are named 'a'"):
        CameraSet([Camera(Generated(), name="a"), Camera(Generated(), name="a")])
    with pytest.raises(CameraError, match=r"camera 'x' has no source: set cameras\.x\.source"):
        CameraSet.from_config({"x": {"fps": 30}})
    broken = CameraSet([Camera(Generated(), name="ok"), Camera(tmp_path / "missing.avi", name="gone")])
    with pytest.raises(CameraError, match="camera 'gone': video file"):
        broken.start()
    assert camera_threads() == []  # the camera that had started was closed again
