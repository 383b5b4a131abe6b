"""What the launch files (launch/*.launch.py) share: the launch arguments several of them declare, the
parameter-file path, and one way to start a robot_rl_ros node. Imported by the launch files only (it
needs `launch` and `launch_ros`, which a ROS 2 installation provides); tests/test_ros_launch.py reads
it statically, as it reads the launch files."""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "robot_rl_ros"

# launch arguments declared by more than one launch file: name -> (default, description); a launch file
# may give its own default or description
ARGUMENTS = {
    "task": ("pick_cube", "task config (configs/task)"),
    "robot": ("mujoco", "robot config the bridge drives (configs/robot): mujoco | serial"),
    "steps": ("15000", "online env steps to train"),
    "robot_namespace": ("/robot", "namespace of the robot bridge and the actor"),
    "classifier": (
        "",
        (
            "classifier.pt from `robot-rl train-classifier`: reward and success come from the "
            "cameras (needs a vision task)"
        ),
    ),
    "demos": ("", "zarr store (or run directory) of recorded demos the learner copies"),
    "console": ("false", "start the web console (cameras, state, curves, driving, labels, e-stop)"),
    "console_host": ("127.0.0.1", "address the console listens on (other than the loopback: set console_token)"),
    "console_port": ("8765", "the console's port (0: any free port; the URL is printed)"),
    "console_token": ("", "the console's token: '' (loopback only), auto (generate one), or a secret of >= 16 chars"),
}


def config(name):
    """A parameter file installed in share/robot_rl_ros/config."""
    return os.path.join(get_package_share_directory(PACKAGE), "config", name)


def argument(name, default=None, description=None):
    """DeclareLaunchArgument `name`, with the shared default and description (ARGUMENTS) unless given."""
    shared_default, shared_description = ARGUMENTS.get(name, (None, None))
    default = shared_default if default is None else default
    description = shared_description if description is None else description
    if default is None:  # a required argument
        return DeclareLaunchArgument(name, description=description)
    return DeclareLaunchArgument(name, default_value=default, description=description)


def is_set(value):
    """A condition: the launch argument substitution `value` is not empty."""
    return IfCondition(PythonExpression(['"', value, '" != ""']))


def node(executable, parameter_file, parameters, namespace=None, condition=None):
    """The robot_rl_ros node `executable` (named after it) with config/`parameter_file` and the inline
    `parameters` (a dict; hydra `overrides` items as lists of parts), printing to the screen."""
    return Node(
        package=PACKAGE,
        executable=executable,
        name=executable,
        namespace=namespace,
        output="screen",
        emulate_tty=True,
        parameters=[config(parameter_file), parameters],
        condition=condition,
    )


def robot_rl(command, arguments):
    """`robot-rl <command> key=value ...` as a process of the launch (each argument a string or a list of
    parts joined into one), printing to the screen: e.g. deploy, which runs an exported policy."""
    return ExecuteProcess(cmd=["robot-rl", command, *arguments], output="screen", emulate_tty=True)


def learner(overrides):
    """The learner (no namespace: it serves every actor of the training namespace)."""
    return node("learner", "learner.yaml", {"overrides": overrides})


def reward_classifier(classifier, robot_namespace, reliable_sensors=False):
    """The reward_classifier node watching `robot_namespace`'s cameras, started when `classifier` is set
    (`reliable_sensors`: for a lock-stepped bridge, which publishes its sensors reliably)."""
    return node(
        "reward_classifier",
        "reward_classifier.yaml",
        {"classifier": classifier, "robot_namespace": robot_namespace, "reliable_sensors": reliable_sensors},
        namespace=robot_namespace,
        condition=is_set(classifier),
    )


def console(enabled, host, port, token):
    """The web console node, started when `enabled` is true (no namespace: it finds every robot bridge;
    the token is typed as a string even when empty)."""
    return node(
        "console",
        "console.yaml",
        {"host": host, "port": port, "token": ParameterValue(token, value_type=str)},
        condition=IfCondition(enabled),
    )


__all__ = [
    "ARGUMENTS",
    "LaunchConfiguration",
    "argument",
    "config",
    "console",
    "is_set",
    "learner",
    "node",
    "reward_classifier",
]
