"""Train in simulation over ROS 2: a lock-stepped MuJoCo robot bridge, one actor, the learner
[, the reward classifier when `classifier` is set].

    ros2 launch robot_rl_ros sim_train.launch.py
    ros2 launch robot_rl_ros sim_train.launch.py task:=pick_cube steps:=5000 seed:=1
    ros2 launch robot_rl_ros sim_train.launch.py task:=pick_cube_vision \
        classifier:=runs/classifier/classifier.pt

The bridge starts armed and the actor active (sim: nothing physical can get hurt; `activate:=false`
keeps the actor waiting for `<robot_namespace>/actor/activate`). The actor records `num_demos`
scripted demos first, then acts with the learner's newest weights; the learner stops after `steps`
online env steps and writes summary.json in `run_dir` (a second launch on the same run_dir resumes).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node


def config(name):
    """A parameter file installed in share/robot_rl_ros/config."""
    return os.path.join(get_package_share_directory('robot_rl_ros'), 'config', name)


def generate_launch_description():
    task = LaunchConfiguration('task')
    run_dir = LaunchConfiguration('run_dir')
    steps = LaunchConfiguration('steps')
    seed = LaunchConfiguration('seed')
    robot_namespace = LaunchConfiguration('robot_namespace')
    classifier = LaunchConfiguration('classifier')
    num_demos = LaunchConfiguration('num_demos')
    demos = LaunchConfiguration('demos')
    activate = LaunchConfiguration('activate')

    has_classifier = PythonExpression(['"', classifier, '" != ""'])

    # hydra overrides: each item a list (concatenated into one string); a bare substitution in the
    # list would make launch_ros join the whole list into a single string
    bridge_params = {
        'overrides': ['robot=mujoco', ['task=', task]],
        'seed': seed,
    }
    return LaunchDescription([
        DeclareLaunchArgument('task', default_value='pick_cube',
                              description='task config (configs/task): pick_cube | pick_cube_vision'),
        DeclareLaunchArgument('run_dir', default_value=['runs/ros_', task, '_seed', seed],
                              description='the learner\'s run directory (resumes when it holds a run)'),
        DeclareLaunchArgument('steps', default_value='15000', description='online env steps to train'),
        DeclareLaunchArgument('seed', default_value='0', description='seed of the bridge, actor and learner'),
        DeclareLaunchArgument('robot_namespace', default_value='/robot',
                              description='namespace of the robot bridge and the actor'),
        DeclareLaunchArgument('classifier', default_value='',
                              description='classifier.pt from `robot-rl train-classifier`: the actor\'s reward '
                                          'comes from it and a reward_classifier node monitors the cameras '
                                          '(needs a vision task)'),
        DeclareLaunchArgument('num_demos', default_value='20',
                              description='scripted demos the actor records before it trains'),
        DeclareLaunchArgument('demos', default_value='',
                              description='zarr store (or run directory) whose demo episodes the learner copies'),
        DeclareLaunchArgument('activate', default_value='true',
                              description='start the actor active (false: call <robot_namespace>/actor/activate)'),

        Node(
            package='robot_rl_ros', executable='robot_bridge', name='robot_bridge', namespace=robot_namespace,
            output='screen', emulate_tty=True,
            parameters=[config('sim_bridge.yaml'), bridge_params],
        ),
        Node(
            package='robot_rl_ros', executable='actor', name='actor', namespace=robot_namespace,
            output='screen', emulate_tty=True,
            parameters=[config('sim_actor.yaml'), {
                'overrides': ['robot=ros', ['robot.namespace=', robot_namespace],
                              ['task=', task], ['seed=', seed], ['reward.classifier=', classifier]],
                'num_demos': num_demos,
                'start_active': activate,
            }],
        ),
        Node(
            package='robot_rl_ros', executable='learner', name='learner',
            output='screen', emulate_tty=True,
            parameters=[config('learner.yaml'), {
                'overrides': [['task=', task], ['run_dir=', run_dir], ['steps=', steps], ['seed=', seed],
                              ['demos=', demos], ['reward.classifier=', classifier]],
            }],
        ),
        Node(
            package='robot_rl_ros', executable='reward_classifier', name='reward_classifier',
            namespace=robot_namespace, output='screen', emulate_tty=True,
            parameters=[config('reward_classifier.yaml'), {
                'classifier': classifier,
                'robot_namespace': robot_namespace,
                'reliable_sensors': True,
            }],
            condition=IfCondition(has_classifier),
        ),
    ])
