"""CameraFeed: real cameras to the console at their own rate, not the control loop's (10 Hz)."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from robot_rl.console.hub import RobotHub


class CameraFeed:
    """A daemon thread that publishes each camera's newest frame (`Camera.peek`, which leaves the frame
    unread for the policy) to `hub`, polling every `poll_s` (the server caps what it sends per page)."""

    def __init__(self, hub: RobotHub, cameras: Iterable, poll_s: float = 0.01) -> None:
        self.hub, self.cameras, self.period = hub, list(cameras), float(poll_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console_camera_feed", daemon=True)
        self.published = 0

    def start(self) -> CameraFeed:
        self._thread.start()
        return self

    def _run(self) -> None:
        seen: dict[str, int] = {}
        while not self._stop.wait(self.period):
            for camera in self.cameras:
                frame = camera.peek()
                if frame is not None and frame.index != seen.get(camera.name):
                    seen[camera.name] = frame.index
                    self.hub.publish_frame(camera.name, frame.image)
                    self.published += 1

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
