"""A std_srvs/SetBool service that activates and deactivates a process's control loop (`robot-rl deploy
activate=service`). rclpy is imported here: import this module lazily."""

from __future__ import annotations

from collections.abc import Callable


class ActivationService:
    """`name` (SetBool) on `node`: `on_change(request.data)` returns the response message."""

    def __init__(self, node, name: str, on_change: Callable[[bool], str]) -> None:
        from std_srvs.srv import SetBool

        self.name = name
        self.on_change = on_change
        self.service = node.create_service(SetBool, name, self._handle)

    def _handle(self, request, response):
        response.message = self.on_change(bool(request.data))
        response.success = True
        return response
