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

from launch import LaunchDescription
from launch.substitutions import LaunchConfiguration

from robot_rl_ros.launch_common import argument, node


def generate_launch_description():
    policy = LaunchConfiguration("policy")
    task = LaunchConfiguration("task")
    robot = LaunchConfiguration("robot")
    mode = LaunchConfiguration("mode")
    episodes = LaunchConfiguration("episodes")
    robot_namespace = LaunchConfiguration("robot_namespace")

    bridge_params = {"overrides": [["robot=", robot], ["task=", task]], "mode": mode}
    return LaunchDescription(
        [
            argument("policy", description="run directory of the trained policy (its checkpoint)"),
            argument("task", description="task config (configs/task) the policy was trained on"),
            argument("robot"),
            argument("mode", "free", "bridge mode: free (real time) | lockstep (one step per command)"),
            argument("episodes", "0", "episodes to run (0: until stopped)"),
            argument("robot_namespace"),
            node("robot_bridge", "real_bridge.yaml", bridge_params, namespace=robot_namespace),
            node(
                "actor",
                "deploy_actor.yaml",
                {
                    "overrides": ["robot=ros", ["robot.namespace=", robot_namespace], ["task=", task]],
                    "policy": policy,
                    "episodes": episodes,
                },
                namespace=robot_namespace,
            ),
        ]
    )
