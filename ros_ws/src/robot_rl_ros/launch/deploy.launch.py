"""Deploy an exported policy (`robot-rl export`): a robot bridge (disarmed) and `robot-rl deploy`, which runs
the policy file (onnxruntime, no torch, no learner) through the safety layer and logs every step.

    ros2 launch robot_rl_ros deploy.launch.py policy:=runs/pick_cube_seed0/policy.onnx episodes:=20
    ros2 launch robot_rl_ros deploy.launch.py policy:=... robot:=serial task:=pick_cube

Nothing moves until the operator arms the bridge and activates the policy:

    ros2 service call /robot/arm std_srvs/srv/SetBool "{data: true}"
    ros2 service call /robot/deploy/activate std_srvs/srv/SetBool "{data: true}"

`task` is the bridge's task: the one the policy was trained on (deploy refuses a policy whose observations
the bridge does not publish). `mode:=lockstep` steps the sim once per command (fast evaluation in sim);
free runs at the robot's control rate as hardware does. The log, summary and videos go to `out`.
"""

from launch import LaunchDescription
from launch.substitutions import LaunchConfiguration

from robot_rl_ros.launch_common import argument, node, robot_rl


def generate_launch_description():
    policy = LaunchConfiguration("policy")
    task = LaunchConfiguration("task")
    robot = LaunchConfiguration("robot")
    mode = LaunchConfiguration("mode")
    episodes = LaunchConfiguration("episodes")
    out = LaunchConfiguration("out")
    video = LaunchConfiguration("video")
    robot_namespace = LaunchConfiguration("robot_namespace")

    bridge_params = {"overrides": [["robot=", robot], ["task=", task]], "mode": mode}
    return LaunchDescription(
        [
            argument("policy", description="the exported policy file (robot-rl export): policy.onnx"),
            argument("task", description="task config (configs/task) the policy was trained on"),
            argument("robot"),
            argument("mode", "free", "bridge mode: free (real time) | lockstep (one step per command)"),
            argument("episodes", "10", "episodes to run"),
            argument("out", "deploy", "directory of the deployment's log, summary and videos"),
            argument("video", "0", "record the first N episodes as mp4"),
            argument("robot_namespace"),
            node("robot_bridge", "real_bridge.yaml", bridge_params, namespace=robot_namespace),
            robot_rl(
                "deploy",
                [
                    ["policy=", policy],
                    "robot=ros",
                    ["robot.namespace=", robot_namespace],
                    ["episodes=", episodes],
                    ["out=", out],
                    ["video=", video],
                    "activate=service",
                ],
            ),
        ]
    )
