"""One module per `robot-rl` command. A command that takes a hydra config has `CONFIG` (the config
name in configs/) and `run(cfg)`; one that takes positional arguments has `CONFIG = None` and
`main(command, args) -> exit status`. robot_rl/cli.py parses and dispatches."""
