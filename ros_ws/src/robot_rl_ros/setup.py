"""ament_python package robot_rl_ros (colcon build --packages-select robot_rl_ros).

robot_rl itself is pip-installed (pip install "robot_rl[ros]"), not built here.
"""

from glob import glob

from setuptools import find_packages, setup

package_name = "robot_rl_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.launch.py")),
        (f"share/{package_name}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="robot_rl maintainers",
    maintainer_email="robot_rl@example.com",
    description="ROS 2 nodes of robot_rl: robot bridge, actor, learner, reward classifier, teleop, web console",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "robot_bridge = robot_rl_ros.bridge:main",
            "actor = robot_rl_ros.actor:main",
            "learner = robot_rl_ros.learner:main",
            "reward_classifier = robot_rl_ros.reward_classifier:main",
            "teleop = robot_rl_ros.teleop:main",
            "console = robot_rl_ros.console:main",
        ],
    },
)
