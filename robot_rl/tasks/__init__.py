"""Task registry: `make_task(name, **cfg)`."""

from __future__ import annotations

from collections.abc import Callable

from robot_rl.tasks.base import Expert, Task, make_expert
from robot_rl.tasks.peg_insert import PegInsertTask
from robot_rl.tasks.peg_insert_vision import PegInsertVisionTask
from robot_rl.tasks.pick_cube import PickCubeTask
from robot_rl.tasks.pick_cube_vision import PickCubeVisionTask
from robot_rl.tasks.relocate import RelocateTask

TASKS: dict[str, Callable[..., Task]] = {
    "pick_cube": PickCubeTask,
    "pick_cube_vision": PickCubeVisionTask,
    "peg_insert": PegInsertTask,  # Panda, sim only (scene sim/panda_peg_insert.xml)
    "peg_insert_vision": PegInsertVisionTask,
    # target sims standing in for the real robot: the same task with a fixed perturbation (configs/task/*_target.yaml)
    "pick_cube_target": PickCubeTask,
    "pick_cube_vision_target": PickCubeVisionTask,
    # the cube from region A to region B (direction=forward) or back (backward): reset-free practice's pair
    "relocate": RelocateTask,
}


def make_task(name: str, **cfg) -> Task:
    """Build the task registered as `name` with keyword config `cfg`."""
    try:
        factory = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
    return factory(**cfg)


__all__ = [
    "Expert",
    "Task",
    "make_expert",
    "PegInsertTask",
    "PegInsertVisionTask",
    "PickCubeTask",
    "PickCubeVisionTask",
    "RelocateTask",
    "TASKS",
    "make_task",
]
