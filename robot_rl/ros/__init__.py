"""ROS 2 helpers for robot_rl: the contract (topics, types, QoS), background nodes and per-stamp frame
assembly. Nothing here imports rclpy at module import time; `robot_rl.ros.node` imports it on use."""
