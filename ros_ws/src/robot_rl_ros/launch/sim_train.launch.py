"""Train in simulation over ROS 2: a lock-stepped MuJoCo robot bridge, one actor, the learner
[, the reward classifier when `classifier` is set] [, the web console when `console` is true].

    ros2 launch robot_rl_ros sim_train.launch.py
    ros2 launch robot_rl_ros sim_train.launch.py task:=pick_cube steps:=5000 seed:=1
    ros2 launch robot_rl_ros sim_train.launch.py task:=pick_cube_vision \
        classifier:=runs/classifier/classifier.pt

The bridge starts armed and the actor active (sim: nothing physical can get hurt; `activate:=false`
keeps the actor waiting for `<robot_namespace>/actor/activate`). The actor records `num_demos`
scripted demos first, then acts with the learner's newest weights; the learner stops after `steps`
online env steps and writes summary.json in `run_dir` (a second launch on the same run_dir resumes).

`console:=true` also starts the web console (open the URL it prints: cameras, state, the run's curves,
arm and e-stop) and has the actor take the console's teleop commands (teleop=ros): a person can take
over, label and end episodes. The lock-stepped sim runs as fast as the actor, faster than real time; to
drive it at a robot's pace use real_train.launch.py robot:=mujoco console:=true.
"""

from launch import LaunchDescription
from launch.substitutions import LaunchConfiguration, PythonExpression

from robot_rl_ros.launch_common import argument, console, learner, node, reward_classifier


def generate_launch_description():
    task = LaunchConfiguration("task")
    run_dir = LaunchConfiguration("run_dir")
    steps = LaunchConfiguration("steps")
    seed = LaunchConfiguration("seed")
    robot_namespace = LaunchConfiguration("robot_namespace")
    classifier = LaunchConfiguration("classifier")
    num_demos = LaunchConfiguration("num_demos")
    demos = LaunchConfiguration("demos")
    activate = LaunchConfiguration("activate")
    with_console = LaunchConfiguration("console")
    # the actor reads the console's teleop commands when the console runs
    teleop_device = PythonExpression(['"ros" if "', with_console, '".lower() == "true" else "none"'])

    # hydra overrides: each item a list (concatenated into one string); a bare substitution in the
    # list would make launch_ros join the whole list into a single string
    bridge_params = {
        "overrides": ["robot=mujoco", ["task=", task]],
        "seed": seed,
    }
    return LaunchDescription(
        [
            argument("task", description="task config (configs/task): pick_cube | pick_cube_vision"),
            argument(
                "run_dir",
                ["runs/ros_", task, "_seed", seed],
                "the learner's run directory (resumes when it holds a run)",
            ),
            argument("steps"),
            argument("seed", "0", "seed of the bridge, actor and learner"),
            argument("robot_namespace"),
            argument(
                "classifier",
                description="classifier.pt from `robot-rl train-classifier`: the actor's reward "
                "comes from it and a reward_classifier node monitors the cameras "
                "(needs a vision task)",
            ),
            argument("num_demos", "20", "scripted demos the actor records before it trains"),
            argument("demos", description="zarr store (or run directory) whose demo episodes the learner copies"),
            argument("activate", "true", "start the actor active (false: call <robot_namespace>/actor/activate)"),
            argument("console"),
            argument("console_host"),
            argument("console_port"),
            argument("console_token"),
            node("robot_bridge", "sim_bridge.yaml", bridge_params, namespace=robot_namespace),
            node(
                "actor",
                "sim_actor.yaml",
                {
                    "overrides": [
                        "robot=ros",
                        ["robot.namespace=", robot_namespace],
                        ["task=", task],
                        ["seed=", seed],
                        ["reward.classifier=", classifier],
                        ["teleop=", teleop_device],
                        ["++teleop.namespace=", robot_namespace],
                    ],
                    "num_demos": num_demos,
                    "start_active": activate,
                },
                namespace=robot_namespace,
            ),
            learner(
                [
                    ["task=", task],
                    ["run_dir=", run_dir],
                    ["steps=", steps],
                    ["seed=", seed],
                    ["demos=", demos],
                    ["reward.classifier=", classifier],
                ]
            ),
            reward_classifier(classifier, robot_namespace, reliable_sensors=True),
            console(
                with_console,
                LaunchConfiguration("console_host"),
                LaunchConfiguration("console_port"),
                LaunchConfiguration("console_token"),
            ),
        ]
    )
