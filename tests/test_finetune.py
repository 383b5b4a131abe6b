"""Fine-tuning from a pretrained run (`robot-rl train init_from=<run_dir> finetune=wsrl|keep_offline|reset`),
through the real command: warm start, warm-up, offline data, the fresh-start baseline, resume, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_proc import robot_rl as run_cli
from omegaconf import OmegaConf

from robot_rl.cli import main as cli_main
from robot_rl.data.episode_log import EpisodeLog
from robot_rl.data.schema import EpisodeSource
from robot_rl.envs.factory import make_env
from robot_rl.runtime.trained import load_trained

UTD = 2
FAST = [
    "agent.compile=false",
    "agent.batch_size=64",
    f"agent.utd={UTD}",
    "runtime.learning_starts=50",
    "runtime.eval_episodes=2",
    "runtime.eval_every=100000",
    "runtime.torch_threads=1",
    "logger.tensorboard=false",
    "num_demos=2",
]
NETWORKS = ("actor", "critic", "target_critic")


def train(*args: object, check: bool = True):
    proc = run_cli("train", *args, *FAST, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"robot-rl train {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def agent_state(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", weights_only=True)["agent"]


def same_networks(a: dict, b: dict) -> bool:
    return all(torch.equal(a[net][k], b[net][k]) for net in NETWORKS for k in a[net]) and torch.equal(
        a["log_temperature"], b["log_temperature"]
    )


def source_lengths(log: EpisodeLog, sources) -> int:
    meta = log.episode_meta()
    return int(meta["length"][np.isin(meta["source"], [int(s) for s in sources])].sum())


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A tiny pretraining run: 2 scripted demos, 200 online steps with updates."""
    run = tmp_path_factory.mktemp("ft") / "pre"
    train(f"run_dir={run}", "steps=200")
    assert summary(run)["critic_updates"] > 0
    return run


def test_wsrl_warm_start_warm_up_and_resume(pretrained, tmp_path):
    """On a task whose velocity bounds differ (task.action_scale): fewer steps than the warm-up, no update
    at all, so the run's networks and input scaling are the source's, its first deterministic action is the
    pretrained policy's, and it recorded no demos. Resumed with the source gone (a resume never reads
    init_from), updates begin once the online buffer holds `warmup_steps`; the run's checkpoint loads for
    eval with the source's scaling."""
    source = tmp_path / "source"
    shutil.copytree(pretrained, source)
    run = tmp_path / "wsrl"
    args = [f"run_dir={run}", f"init_from={source}", "finetune=wsrl", "finetune.warmup_steps=120"]
    proc = train(*args, "steps=100", "task.action_scale=0.02")
    assert "wsrl: networks from" in proc.stdout and "keeps the source's input scaling" in proc.stdout
    pre, mine = agent_state(pretrained), agent_state(run)
    assert same_networks(pre, mine) and torch.equal(pre["obs_inv_scale"], mine["obs_inv_scale"])
    assert mine["num_updates"] == 0 and not mine["actor_optim"]["state"]  # fresh optimiser moments
    log = EpisodeLog(run / "episodes.zarr")
    meta = log.episode_meta()
    assert not np.isin(meta["source"], [EpisodeSource.DEMO, EpisodeSource.INTERVENTION]).any()
    # the zero-shot eval round at step 0 acts with the loaded policy: compare with the pretrained agent
    first_eval = int(np.flatnonzero((meta["source"] == EpisodeSource.EVAL) & (meta["eval_step"] == 0))[0])
    episode = log.episode(first_eval)
    env = make_env(OmegaConf.load(pretrained / "config.yaml"), seed=0)
    try:
        agent = load_trained(pretrained, env).agent
    finally:
        env.close()
    action = agent.act({"state": episode["observation/state"][0]}, deterministic=True)
    assert np.array_equal(action, episode["policy_action"][0])
    s = summary(run)
    assert s["finetune"] == {"mode": "wsrl", "init_from": str(source), "warmup_steps": 120}
    assert s["demo_episodes"] == 0 and s["replay"]["prior"] == 0
    assert OmegaConf.load(run / "config.yaml").init_from == str(source)

    shutil.rmtree(source)
    proc = train(*args, "steps=220", "task.action_scale=0.02")
    assert "resuming" in proc.stdout and "networks from" not in proc.stdout
    meta = EpisodeLog(run / "episodes.zarr").episode_meta()
    ends = np.cumsum(meta["length"][meta["source"] == EpisodeSource.ONLINE])
    warm_end = int(ends[np.searchsorted(ends, 120)])  # the step whose episode filled the warm-up
    assert 120 <= warm_end < 220
    assert summary(run)["critic_updates"] == UTD * (220 - warm_end) > 0
    assert not same_networks(pre, agent_state(run))
    env = make_env(OmegaConf.load(run / "config.yaml"), seed=0)
    try:
        box = env.observation_space["state"]
        own_scale = torch.tensor(2.0 / (box.high.astype(np.float64) - box.low), dtype=torch.float32)
        assert not torch.equal(own_scale, pre["obs_inv_scale"])  # this task's bounds are not the source's
        assert torch.equal(load_trained(run, env).agent.obs_inv_scale, pre["obs_inv_scale"])
    finally:
        env.close()


def test_wsrl_can_keep_the_sources_optimiser_moments(pretrained, tmp_path):
    """finetune.optimizer=keep: the warm start loads the source's Adam moments with its networks."""
    run = tmp_path / "keep"
    train(
        f"run_dir={run}",
        f"init_from={pretrained}",
        "finetune=wsrl",
        "finetune.warmup_steps=500",
        "finetune.optimizer=keep",
        "steps=50",
    )
    pre, mine = agent_state(pretrained), agent_state(run)
    assert mine["num_updates"] == 0 and mine["actor_optim"]["state"]
    for optim in ("actor_optim", "critic_optim", "temperature_optim"):
        for key, value in pre[optim]["state"].items():
            assert all(torch.equal(value[k], mine[optim]["state"][key][k]) for k in value), optim


def test_critic_warmup_trains_the_critics_only(pretrained, tmp_path):
    """finetune.critic_warmup: the first learner updates after the warm-up leave the actor and temperature as
    the source's while the critics learn; the count survives a resume (a restart does not repeat the phase)."""
    run = tmp_path / "cw"
    args = [f"run_dir={run}", f"init_from={pretrained}", "finetune=wsrl", "finetune.warmup_steps=50"]
    train(*args, "finetune.critic_warmup=200", "steps=250")
    pre, mine = agent_state(pretrained), agent_state(run)
    assert mine["num_updates"] > 0 and not torch.equal(pre["critic"]["out.weight"], mine["critic"]["out.weight"])
    assert all(torch.equal(pre["actor"][k], mine["actor"][k]) for k in pre["actor"])
    assert torch.equal(pre["log_temperature"], mine["log_temperature"])
    calls = mine["num_updates"] // UTD
    assert calls < 200 and summary(run)["finetune"]["critic_warmup"] == 200
    train(*args, "finetune.critic_warmup=200", "steps=450")  # resumed: updates 201 onward move the actor
    after = agent_state(run)
    assert after["num_updates"] // UTD > 200
    assert not all(torch.equal(pre["actor"][k], after["actor"][k]) for k in pre["actor"])


def test_keep_offline_buffers_the_pretraining_data_and_new_demos(pretrained, tmp_path):
    run = tmp_path / "keep"
    proc = train(f"run_dir={run}", f"init_from={pretrained}", "finetune=keep_offline", "steps=100")
    source = EpisodeLog(pretrained / "episodes.zarr")
    offline = source_lengths(source, [EpisodeSource.DEMO, EpisodeSource.ONLINE, EpisodeSource.INTERVENTION])
    assert f"keep_offline: {offline} transitions" in proc.stdout
    new_demos = source_lengths(EpisodeLog(run / "episodes.zarr"), [EpisodeSource.DEMO])
    s = summary(run)
    assert s["demo_episodes"] == 2 and new_demos > 0
    assert s["replay"]["prior"] == offline + new_demos  # eval episodes are not offline data
    assert s["critic_updates"] == UTD * 100  # updates from the first step
    assert s["finetune"]["mode"] == "keep_offline" and s["finetune"]["source_episodes"] == source.num_episodes


def test_reset_is_a_fresh_start(pretrained, tmp_path):
    reset, fresh = tmp_path / "reset", tmp_path / "fresh"
    train(f"run_dir={reset}", f"init_from={pretrained}", "finetune=reset", "steps=120", "seed=3")
    train(f"run_dir={fresh}", "steps=120", "seed=3")
    a, b = agent_state(reset), agent_state(fresh)
    assert same_networks(a, b) and a["num_updates"] == b["num_updates"] > 0
    assert not same_networks(a, agent_state(pretrained))
    drop_wall = lambda run: [{k: v for k, v in e.items() if k != "wall_s"} for e in summary(run)["evals"]]
    assert drop_wall(reset) == drop_wall(fresh)
    assert summary(reset)["finetune"]["mode"] == "reset"


@pytest.mark.parametrize(
    "args, message",
    [
        (["finetune=wsrl"], "finetune=wsrl needs init_from="),
        (["init_from={pre}"], "needs a fine-tuning mode: add finetune=wsrl"),
        (["init_from={tmp}/missing", "finetune=wsrl"], "init_from={tmp}/missing does not exist"),
        (
            ["init_from={tmp}", "finetune=keep_offline"],
            "holds no trained run (checkpoint.pt and episodes.zarr missing)",
        ),
        (
            ["init_from={pre}", "finetune=bogus"],
            "unknown finetune 'bogus': choose one of keep_offline, none, reset, wsrl",
        ),
        (["init_from={pre}", "finetune.mode=bogus"], "finetune.mode='bogus' is not a fine-tuning mode"),
        (["init_from={pre}", "finetune=wsrl", "finetune.warmup_steps=0"], "finetune.warmup_steps=0 must be"),
        (["init_from={pre}", "finetune=wsrl", "finetune.optimizer=old"], "finetune.optimizer='old' must be fresh or"),
        (["init_from={pre}", "finetune=wsrl", "finetune.critic_warmup=-1"], "finetune.critic_warmup=-1 must be"),
        (
            ["init_from={pre}", "finetune=wsrl", "agent.critic_loss=hl_gauss", "agent.value_range=[0,1]"],
            "it has critic_loss=mse, this agent critic_loss=hl_gauss",
        ),
        (["init_from={pre}", "finetune=wsrl", "demos={pre}"], "finetune=wsrl keeps no offline data"),
        (
            ["init_from={pre}", "finetune=wsrl", "task.rotation=true"],
            "{{state: (10,) float32}} and 4-dim actions, not {{state: (14,) float32}} and 7-dim",
        ),
        (["init_from={pre}", "finetune=wsrl", "agent.hidden_dims=[64,64]"], "incompatible checkpoint"),
    ],
)
def test_errors_are_one_line(pretrained, tmp_path, capsys, args, message):
    """`robot-rl train` in this process (the CLI's own entry point): exit 2, one line on stderr, no run."""
    fill = lambda a: a.format(pre=pretrained, tmp=tmp_path)
    status = cli_main(["train", f"run_dir={tmp_path / 'run'}", *map(fill, args), *FAST])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and fill(message) in lines[0], lines
    assert not (tmp_path / "run" / "episodes.zarr").exists()  # nothing ran


def test_the_ros_learner_refuses_init_from(pretrained, tmp_path):
    from robot_rl.config import compose
    from robot_rl.runtime.remote_learner import RemoteLearner

    cfg = compose("train", [f"run_dir={tmp_path / 'run'}", f"init_from={pretrained}", "finetune=wsrl"])
    with pytest.raises(ValueError, match="runs in the embedded trainer only"):
        RemoteLearner(cfg)
    assert not (tmp_path / "run").exists()
