"""Test helpers: reading and pressing the console page (robot_rl/console/static) through selenium."""

from __future__ import annotations

from tests.browser import console_stats, wait_for

# hashes the pixels of a camera's canvas so a test sees its content change (null before its first frame)
IMAGE_SUM = """
const c = document.querySelector('canvas[data-camera="' + arguments[0] + '"]');
if (!c || !c.dataset.seq) return null;
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let s = 0;
for (let i = 0; i < d.length; i += 7) s = (s * 31 + d[i]) % 1000000007;
return s;
"""


def open_page(driver, url: str, timeout: float = 60.0) -> None:
    driver.get(url)
    wait_for(lambda: driver.find_element("id", "connection").text == "connected", timeout, "the page to connect")


def robot_state(driver, robot: str = "robot") -> dict:
    """The page's newest view of `robot` (protocol.py's RobotView), {} before the first."""
    return (console_stats(driver).get("lastState") or {}).get("robots", {}).get(robot, {})


def table_rows(driver) -> list[dict]:
    """The episode table's rows (telemetry)."""
    return (console_stats(driver).get("lastTelemetry") or {}).get("episodes", [])


def click(driver, element_id: str) -> None:
    driver.find_element("id", element_id).click()


def image_sum(driver, robot: str, camera: str):
    return driver.execute_script(IMAGE_SUM, f"{robot}/{camera}")


def wait_images_change(driver, robot: str, camera: str, timeout: float = 30.0) -> None:
    """Wait for a first frame of `camera` on the page, then for its pixels to change."""
    first = wait_for(lambda: image_sum(driver, robot, camera), timeout, f"a {camera} camera image")
    wait_for(lambda: image_sum(driver, robot, camera) not in (None, first), 15, f"the {camera} image to change")


def confirm_clear_estop(driver) -> None:
    """Press 'Clear e-stop' and accept the page's confirmation."""
    click(driver, "clear-estop")
    wait_for(lambda: driver.switch_to.alert, 3, "the confirmation").accept()
