"""robot_rl: real-world robot reinforcement learning (ROS 2, MuJoCo, PyTorch, zarr)."""
