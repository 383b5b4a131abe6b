"""ROS 2 nodes of robot_rl: thin translators between topics/services and robot_rl calls."""
