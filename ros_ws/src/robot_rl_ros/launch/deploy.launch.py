"""Deploy a trained policy: a robot bridge (disarmed) and an actor acting deterministically with the
checkpoint of a `robot-rl train` (or sim_train/real_train) run directory; no learner.

    ros2 launch robot_rl_ros deploy.launch.py policy:=runs/pick_cube_seed0
    ros2 launch robot_rl_ros deploy.launch.py policy:=runs/pick_cube_seed0 mode:=lockstep episodes:=20

Nothing moves until the operator arms the bridge and activates the actor:

    ros2 service call /robot/arm std_srvs/srv/SetBool "{data: true}"
    ros2 service call /robot/actor/activate std_srvs/srv/SetBool "{data: true}"

`task` must be the task the policy was trained on. `mode:=lockstep` steps the sim once per command
(fast evaluation in sim); free runs at the robot's control rate as hardware does.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def config(name):
    """A parameter file installed in share/robot_rl_ros/config."""
    return os.path.join(get_package_share_directory('robot_rl_ros'), 'config', name)


def generate_launch_description():
    policy = LaunchConfiguration('policy')
    task = LaunchConfiguration('task')
    robot = LaunchConfiguration('robot')
    mode = LaunchConfiguration('mode')
    episodes = LaunchConfiguration('episodes')
    robot_namespace = LaunchConfiguration('robot_namespace')

    bridge_params = {'overrides': [['robot=', robot], ['task=', task]], 'mode': mode}
    return LaunchDescription([
        DeclareLaunchArgument('policy', description='run directory of the trained policy (its checkpoint)'),
        DeclareLaunchArgument('task', default_value='pick_cube',
                              description='task config (configs/task) the policy was trained on'),
        DeclareLaunchArgument('robot', default_value='mujoco',
                              description='robot config the bridge drives (configs/robot): mujoco today'),
        DeclareLaunchArgument('mode', default_value='free',
                              description='bridge mode: free (real time) | lockstep (one step per command)'),
        DeclareLaunchArgument('episodes', default_value='0', description='episodes to run (0: until stopped)'),
        DeclareLaunchArgument('robot_namespace', default_value='/robot',
                              description='namespace of the robot bridge and the actor'),

        Node(
            package='robot_rl_ros', executable='robot_bridge', name='robot_bridge', namespace=robot_namespace,
            output='screen', emulate_tty=True,
            parameters=[config('real_bridge.yaml'), bridge_params],
        ),
        Node(
            package='robot_rl_ros', executable='actor', name='actor', namespace=robot_namespace,
            output='screen', emulate_tty=True,
            parameters=[config('deploy_actor.yaml'), {
                'overrides': ['robot=ros', ['robot.namespace=', robot_namespace], ['task=', task]],
                'policy': policy,
                'episodes': episodes,
            }],
        ),
    ])
