"""The firmware's C header is generated from robot_rl/hardware/protocol.py: one definition of the link."""

from pathlib import Path

from robot_rl.hardware.protocol import HEADER_PATH, c_header


def test_generated_header_is_current() -> None:
    header = Path(__file__).resolve().parents[1] / HEADER_PATH
    assert header.read_text() == c_header(), (
        f"{HEADER_PATH} is stale: run python -m robot_rl.hardware.protocol --header {HEADER_PATH}"
    )
