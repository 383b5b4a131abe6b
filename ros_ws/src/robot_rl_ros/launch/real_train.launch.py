"""Train on a robot with a person in the loop: a free-running robot bridge (disarmed), one actor
(holds when the learner is lost; the person intervenes through teleop=ros), the learner, the teleop
node [, the reward classifier when `classifier` is set] [, the web console when `console` is true].

    ros2 launch robot_rl_ros real_train.launch.py device:=spacemouse
    ros2 launch robot_rl_ros real_train.launch.py task:=pick_cube_vision \
        classifier:=runs/classifier/classifier.pt demos:=runs/demos

Nothing moves until the operator arms the bridge and activates the actor:

    ros2 service call /robot/arm std_srvs/srv/SetBool "{data: true}"
    ros2 service call /robot/actor/activate std_srvs/srv/SetBool "{data: true}"

and `ros2 service call /robot/estop std_srvs/srv/SetBool "{data: true}"` stops it (latched).
`robot` names the robot the bridge drives: mujoco (the sim run in real time, like hardware) or serial
(an arm on bus servos behind robot_rl's firmware: `port`, `model`, `arm_id` and `calibration` say which;
`port:=sim` runs the firmware in the loop on a MuJoCo plant):

    ros2 launch robot_rl_ros real_train.launch.py robot:=serial port:=/dev/ttyUSB0 arm_id:=left

`teleop:=false` leaves the teleop node out, e.g. to run it on the operator's machine
(`ros2 run robot_rl_ros teleop --ros-args -p device:=keyboard`).

`console:=true` starts the web console (open the URL it prints): cameras, state, the run's curves,
hold-to-intervene, labels, reset (ends the episode; the actor resets the robot), arm and a latched
e-stop. It and the teleop node may both drive: the actor takes whichever is active. From another
machine: `console_host:=0.0.0.0 console_token:=auto`, or keep the loopback and tunnel with ssh -L.
"""

from launch import LaunchDescription
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PythonExpression

from robot_rl_ros.launch_common import argument, console, learner, node, reward_classifier


def generate_launch_description():
    robot = LaunchConfiguration("robot")
    task = LaunchConfiguration("task")
    run_dir = LaunchConfiguration("run_dir")
    steps = LaunchConfiguration("steps")
    device = LaunchConfiguration("device")
    teleop = LaunchConfiguration("teleop")
    classifier = LaunchConfiguration("classifier")
    demos = LaunchConfiguration("demos")
    robot_namespace = LaunchConfiguration("robot_namespace")
    port = LaunchConfiguration("port")
    model = LaunchConfiguration("model")
    arm_id = LaunchConfiguration("arm_id")
    calibration = LaunchConfiguration("calibration")

    bridge_params = {"overrides": [["robot=", robot], ["task=", task]]}
    serial_params = {
        "overrides": [
            "robot=serial",
            ["task=", task],
            ["robot.port=", port],
            ["robot.model=", model],
            ["robot.id=", arm_id],
            ["robot.calibration=", calibration],
        ]
    }
    serial = PythonExpression(['"', robot, '" == "serial"'])
    return LaunchDescription(
        [
            argument("robot"),
            argument("task"),
            argument("run_dir", ["runs/real_", task], "the learner's run directory (resumes when it holds a run)"),
            argument("steps"),
            argument("device", "spacemouse", "teleop device: spacemouse | gamepad | keyboard"),
            argument("teleop", "true", "start the teleop node here (false: run it on another machine)"),
            argument("classifier"),
            argument("demos"),
            argument("robot_namespace", description="namespace of the robot bridge, the actor and the teleop topic"),
            argument("port", "/dev/ttyUSB0", "robot:=serial: the firmware's serial port (sim: firmware in the loop)"),
            argument("model", "so101", "robot:=serial: the arm model (sim/<model>_pick_cube.xml)"),
            argument("arm_id", "default", "robot:=serial: the arm's name in its calibration file"),
            argument("calibration", "", "robot:=serial: calibration file (default: robot-rl calibrate's for arm_id)"),
            argument("console"),
            argument("console_host"),
            argument("console_port"),
            argument("console_token"),
            node(
                "robot_bridge",
                "real_bridge.yaml",
                bridge_params,
                namespace=robot_namespace,
                condition=UnlessCondition(serial),
            ),
            node(
                "robot_bridge",
                "real_bridge.yaml",
                serial_params,
                namespace=robot_namespace,
                condition=IfCondition(serial),
            ),
            node(
                "actor",
                "real_actor.yaml",
                {
                    "overrides": [
                        "robot=ros",
                        ["robot.namespace=", robot_namespace],
                        ["task=", task],
                        "teleop=ros",
                        ["teleop.namespace=", robot_namespace],
                        ["reward.classifier=", classifier],
                    ],
                },
                namespace=robot_namespace,
            ),
            learner(
                [
                    ["task=", task],
                    ["run_dir=", run_dir],
                    ["steps=", steps],
                    ["demos=", demos],
                    ["reward.classifier=", classifier],
                ]
            ),
            node(
                "teleop",
                "teleop.yaml",
                {"device": device, "robot_namespace": robot_namespace},
                namespace=robot_namespace,
                condition=IfCondition(teleop),
            ),
            reward_classifier(classifier, robot_namespace),
            console(
                LaunchConfiguration("console"),
                LaunchConfiguration("console_host"),
                LaunchConfiguration("console_port"),
                LaunchConfiguration("console_token"),
            ),
        ]
    )
