"""Train on a robot with a person in the loop: a free-running robot bridge (disarmed), one actor
(holds when the learner is lost; the person intervenes through teleop=ros), the learner, the teleop
node [, the reward classifier when `classifier` is set].

    ros2 launch robot_rl_ros real_train.launch.py device:=spacemouse
    ros2 launch robot_rl_ros real_train.launch.py task:=pick_cube_vision \
        classifier:=runs/classifier/classifier.pt demos:=runs/demos

Nothing moves until the operator arms the bridge and activates the actor:

    ros2 service call /robot/arm std_srvs/srv/SetBool "{data: true}"
    ros2 service call /robot/actor/activate std_srvs/srv/SetBool "{data: true}"

and `ros2 service call /robot/estop std_srvs/srv/SetBool "{data: true}"` stops it (latched).
`robot` names the robot the bridge drives: mujoco (the sim run in real time, like hardware) is the
only one today; the serial robot joins later. `teleop:=false` leaves the teleop node out, e.g. to
run it on the operator's machine (`ros2 run robot_rl_ros teleop --ros-args -p device:=keyboard`).
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
    robot = LaunchConfiguration('robot')
    task = LaunchConfiguration('task')
    run_dir = LaunchConfiguration('run_dir')
    steps = LaunchConfiguration('steps')
    device = LaunchConfiguration('device')
    teleop = LaunchConfiguration('teleop')
    classifier = LaunchConfiguration('classifier')
    demos = LaunchConfiguration('demos')
    robot_namespace = LaunchConfiguration('robot_namespace')

    has_classifier = PythonExpression(['"', classifier, '" != ""'])

    bridge_params = {'overrides': [['robot=', robot], ['task=', task]]}
    return LaunchDescription([
        DeclareLaunchArgument('robot', default_value='mujoco',
                              description='robot config the bridge drives (configs/robot): mujoco today'),
        DeclareLaunchArgument('task', default_value='pick_cube', description='task config (configs/task)'),
        DeclareLaunchArgument('run_dir', default_value=['runs/real_', task],
                              description='the learner\'s run directory (resumes when it holds a run)'),
        DeclareLaunchArgument('steps', default_value='15000', description='online env steps to train'),
        DeclareLaunchArgument('device', default_value='spacemouse',
                              description='teleop device: spacemouse | gamepad | keyboard'),
        DeclareLaunchArgument('teleop', default_value='true',
                              description='start the teleop node here (false: run it on another machine)'),
        DeclareLaunchArgument('classifier', default_value='',
                              description='classifier.pt from `robot-rl train-classifier`: reward and success '
                                          'come from the cameras (needs a vision task)'),
        DeclareLaunchArgument('demos', default_value='',
                              description='zarr store (or run directory) of recorded demos the learner copies'),
        DeclareLaunchArgument('robot_namespace', default_value='/robot',
                              description='namespace of the robot bridge, the actor and the teleop topic'),

        Node(
            package='robot_rl_ros', executable='robot_bridge', name='robot_bridge', namespace=robot_namespace,
            output='screen', emulate_tty=True,
            parameters=[config('real_bridge.yaml'), bridge_params],
        ),
        Node(
            package='robot_rl_ros', executable='actor', name='actor', namespace=robot_namespace,
            output='screen', emulate_tty=True,
            parameters=[config('real_actor.yaml'), {
                'overrides': ['robot=ros', ['robot.namespace=', robot_namespace], ['task=', task],
                              'teleop=ros', ['teleop.namespace=', robot_namespace],
                              ['reward.classifier=', classifier]],
            }],
        ),
        Node(
            package='robot_rl_ros', executable='learner', name='learner',
            output='screen', emulate_tty=True,
            parameters=[config('learner.yaml'), {
                'overrides': [['task=', task], ['run_dir=', run_dir], ['steps=', steps], ['demos=', demos],
                              ['reward.classifier=', classifier]],
            }],
        ),
        Node(
            package='robot_rl_ros', executable='teleop', name='teleop', namespace=robot_namespace,
            output='screen', emulate_tty=True,
            parameters=[config('teleop.yaml'), {'device': device, 'robot_namespace': robot_namespace}],
            condition=IfCondition(teleop),
        ),
        Node(
            package='robot_rl_ros', executable='reward_classifier', name='reward_classifier',
            namespace=robot_namespace, output='screen', emulate_tty=True,
            parameters=[config('reward_classifier.yaml'), {
                'classifier': classifier,
                'robot_namespace': robot_namespace,
            }],
            condition=IfCondition(has_classifier),
        ),
    ])
