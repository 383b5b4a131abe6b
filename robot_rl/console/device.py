"""ConsoleDevice: the web page as a teleop device (`teleop=console`): the person's command from a RobotHub."""

from __future__ import annotations

from robot_rl.console.hub import RobotHub
from robot_rl.teleop.device import DeviceCommand, TeleopDevice


class ConsoleDevice(TeleopDevice):
    """Reads the hub's command each control step (the lease, silence and stale rules are the hub's)."""

    def __init__(self, hub: RobotHub) -> None:
        self.hub = hub

    def read(self) -> DeviceCommand:
        return self.hub.read_command()

    def reset(self) -> None:
        """Labels pressed between episodes are dropped, like every other device's."""
        self.hub.read_command()
