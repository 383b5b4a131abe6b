"""Headless Chromium for the console page's tests, through selenium, with nothing downloaded.

The browser and its driver are the system's (Debian: `apt-get install chromium chromium-driver`); Selenium
Manager is never asked for either: the driver's path is given and SE_OFFLINE is set.

    with chrome() as driver:
        driver.get(server.url)
        hold_key(driver, Keys.SPACE, 0.5, "w")   # Space (the dead-man) + W for half a second
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1400, 1000)

# The Gamepad API stub: navigator.getGamepads() returns window.__pad, which tests edit (set_pad).
GAMEPAD_STUB = """
const buttons = [];
for (let i = 0; i < 17; i++) buttons.push({pressed: false, touched: false, value: 0});
window.__pad = {connected: true, mapping: 'standard', axes: [0, 0, 0, 0], buttons: buttons,
                id: 'stub gamepad (standard)', index: 0, timestamp: performance.now()};
navigator.getGamepads = () => [window.__pad];
"""


def skip_without_chromium() -> None:
    """pytest.skip where the system's chromium or chromedriver is missing (CI installs both)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.skip(f"no {' or '.join(missing)}: apt-get install chromium chromium-driver")
    pytest.importorskip("selenium")


@contextlib.contextmanager
def chrome(width: int = WINDOW[0], height: int = WINDOW[1]) -> Iterator:
    """A headless Chromium WebDriver (quit on exit)."""
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager, were it ever run, must not download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={width},{height}"):
        options.add_argument(arg)
    # background windows keep their timers: the page's 20 ms heartbeat must not be throttled in tests
    for arg in ("--disable-background-timer-throttling", "--disable-renderer-backgrounding"):
        options.add_argument(arg)
    options.add_argument("--disable-backgrounding-occluded-windows")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # page errors: page_errors(driver)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(
    condition: Callable[[], object],
    timeout: float = 5.0,
    what: str = "condition",
    poll: float = 0.01,
    context: Callable[[], object] | None = None,
):
    """Poll `condition` until it returns a truthy value (returned) or fail after `timeout` seconds; the
    failure message adds `context()` (what the page showed, say) when given."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"; {context()}" if context is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{extra}")
        time.sleep(poll)


def leave_page(driver, timeout: float = 5.0) -> None:
    """Navigate to about:blank and wait until it has replaced the page (its pagehide handlers ran).
    WebDriver's get() returns before an about:blank navigation commits; a get() issued meanwhile can be
    dropped by Chrome and then hang until the page-load timeout."""
    driver.get("about:blank")
    wait_for(
        lambda: driver.execute_script("return document.URL === 'about:blank' && document.readyState === 'complete'"),
        timeout,
        what="about:blank to replace the page",
    )


def hold_key(driver, key: str, seconds: float, *more: str) -> None:
    """Press `key` (then `more` keys) through WebDriver's input actions, hold them `seconds`, release
    them in reverse order. Keys are selenium Keys (Keys.SPACE, Keys.SHIFT) or characters ("w")."""
    from selenium.webdriver.common.action_chains import ActionChains

    keys = (key, *more)
    down = ActionChains(driver)
    for k in keys:
        down.key_down(k)
    down.perform()
    time.sleep(seconds)
    up = ActionChains(driver)
    for k in reversed(keys):
        up.key_up(k)
    up.perform()


def key_down(driver, *keys: str) -> None:
    """Press keys and keep them down (release with key_up)."""
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(driver)
    for k in keys:
        chain.key_down(k)
    chain.perform()


def key_up(driver, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(driver)
    for k in keys:
        chain.key_up(k)
    chain.perform()


def release_keys(driver) -> None:
    """Release every key WebDriver's input actions still hold (keyup events go to the current window)."""
    from selenium.webdriver.remote.command import Command

    driver.execute(Command.W3C_CLEAR_ACTIONS)


def page_errors(driver, ignore: tuple[str, ...] = ()) -> list[str]:
    """The page's uncaught errors and console.error lines since the last call (none ignored by `ignore`)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and not any(part in entry["message"] for part in ignore)
    ]


def stub_gamepad(driver) -> None:
    """Replace the page's Gamepad API by a settable stub (window.__pad); call after the page loaded."""
    driver.execute_script(GAMEPAD_STUB)


def set_pad(driver, axes: list[float] | None = None, pressed: dict[int, bool] | None = None) -> None:
    """Set the stub gamepad's axes and button states (button index -> pressed)."""
    driver.execute_script(
        """
        const [axes, pressed] = arguments;
        if (axes) window.__pad.axes = axes;
        for (const [i, on] of Object.entries(pressed || {})) {
            window.__pad.buttons[Number(i)] = {pressed: on, touched: on, value: on ? 1 : 0};
        }
        window.__pad.timestamp = performance.now();
        """,
        axes,
        {str(k): bool(v) for k, v in (pressed or {}).items()},
    )


def console_stats(driver) -> dict:
    """The page's window.consoleStats (see robot_rl/console/static/console.js)."""
    return driver.execute_script("return window.consoleStats")


def full_page_screenshot(driver, path: str | os.PathLike) -> Path:
    """A PNG of the whole page, beyond the window's height (Chrome DevTools' captureBeyondViewport)."""
    import base64

    # without scrollbars: the page keeps its width when the capture makes the viewport as tall as the page
    driver.execute_cdp_cmd("Emulation.setScrollbarsHidden", {"hidden": True})
    try:
        width, height = wait_for(
            lambda: driver.execute_script(
                "const e = document.documentElement;"
                "return e.clientWidth === innerWidth && [e.scrollWidth, e.scrollHeight]"
            ),
            what="the page laid out without scrollbars",
        )
        clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
    finally:
        driver.execute_cdp_cmd("Emulation.setScrollbarsHidden", {"hidden": False})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
