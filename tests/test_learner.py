"""The SAC/RLPD learner: vectorised ensemble, sampling, a tiny control problem, exact checkpoints."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from robot_rl.agents.networks import CriticEnsemble
from robot_rl.agents.sac import SACAgent, SACConfig
from robot_rl.data.replay import ReplayBuffer, sample_symmetric

torch.set_num_threads(2)


def random_batch(rows: int, obs_dim: int = 6, action_dim: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "observation": {"state": torch.randn(rows, obs_dim, generator=g)},
        "next_observation": {"state": torch.randn(rows, obs_dim, generator=g)},
        "action": torch.rand(rows, action_dim, generator=g) * 2 - 1,
        "reward": torch.rand(rows, generator=g),
        "terminated": (torch.rand(rows, generator=g) < 0.1).float(),
    }


def test_critic_ensemble_matches_independent_members():
    critic = CriticEnsemble(obs_dim=5, action_dim=3, hidden_dims=[32, 32], ensemble_size=4)
    obs, act = torch.randn(7, 5), torch.randn(7, 3)
    q = critic(obs, act)
    assert q.shape == (4, 7)
    x = torch.cat([obs, act], -1)
    for m in range(4):  # member m computed on its own, layer by layer
        h = x
        for linear, norm in zip(critic.linears, critic.norms):
            h = h @ linear.weight[m] + linear.bias[m]
            h = torch.relu(torch.nn.functional.layer_norm(h, h.shape[-1:]) * norm.weight[m] + norm.bias[m])
        expected = (h @ critic.out.weight[m] + critic.out.bias[m]).squeeze(-1)
        torch.testing.assert_close(q[m], expected)
    members = torch.tensor([3, 1])
    torch.testing.assert_close(critic(obs, act, members), q[members])
    # members differ: they are independent networks, not copies
    assert not torch.allclose(q[0], q[1])


def test_agent_defaults_follow_rlpd():
    agent = SACAgent({"state": 10}, 4, SACConfig(compile=False))
    assert agent.target_entropy == -2.0
    assert agent.temperature.item() == pytest.approx(0.01, rel=1e-5)
    assert agent.critic.ensemble_size == 2
    with pytest.raises(ValueError, match="critic_subsample"):
        SACConfig(ensemble_size=2, critic_subsample=3)


def test_update_changes_critic_and_soft_updates_target():
    cfg = SACConfig(ensemble_size=4, critic_subsample=2, utd=3, batch_size=16, hidden_dims=[32, 32], compile=False)
    agent = SACAgent({"state": 6}, 2, cfg)
    before = [p.detach().clone() for p in agent.critic.parameters()]
    target_before = [p.detach().clone() for p in agent.target_critic.parameters()]
    info = agent.update(random_batch(48))
    assert agent.num_updates == 3
    assert set(info) >= {"critic_loss", "actor_loss", "temperature", "entropy"}
    for b, t, p, tp in zip(before, target_before, agent.critic.parameters(), agent.target_critic.parameters()):
        assert not torch.equal(b, p.detach()) or b.numel() == 0
        # target moved towards the critic, by far less than the critic moved
        assert (tp - t).abs().max() <= (p.detach() - t).abs().max() + 1e-7
    with pytest.raises(ValueError, match="utd\\*batch_size"):
        agent.update(random_batch(10))


@pytest.mark.parametrize("grasp", [False, True])
def test_soft_updates_leave_no_autograd_history_on_the_targets(grasp):
    """The soft update runs outside autograd: a recorded in-place lerp chained every update's graph onto
    the target parameters, about 20 kB a critic update never freed (RSS +1 GB over a 30k-step run)."""
    cfg = SACConfig(utd=2, batch_size=16, hidden_dims=[32, 32], compile=False, grasp_critic=grasp)
    agent = SACAgent({"state": 6}, 3, cfg)
    for _ in range(3):
        agent.update(random_batch(32, action_dim=3))
    targets = [*agent.target_critic.parameters(), *(agent.target_grasp_critic.parameters() if grasp else [])]
    assert targets and all(p.is_leaf and p.grad_fn is None and not p.requires_grad for p in targets)


def test_symmetric_sampling_takes_half_from_each_buffer():
    spec = {"state": ((1,), np.float32)}
    prior, online = ReplayBuffer(spec, 1, 100), ReplayBuffer(spec, 1, 100)
    for _ in range(50):
        prior.add({"state": np.array([1.0])}, np.zeros(1), 0.0, {"state": np.array([1.0])}, False)
        online.add({"state": np.array([-1.0])}, np.zeros(1), 0.0, {"state": np.array([-1.0])}, False)
    batch = sample_symmetric(prior, online, 64, torch.Generator().manual_seed(0))
    states = batch["observation"]["state"][:, 0]
    assert (states == 1).sum() == 32 and (states == -1).sum() == 32
    # a UTD batch: every critic update's slice is itself half and half
    batch = sample_symmetric(prior, online, 4 * 16, torch.Generator().manual_seed(0), blocks=4)
    for block in batch["observation"]["state"][:, 0].reshape(4, 16):
        assert (block == 1).sum() == 8 and (block == -1).sum() == 8
    assert torch.equal(batch["observation"]["state"], batch["next_observation"]["state"])  # rows stay aligned
    with pytest.raises(ValueError, match="half-and-half"):
        sample_symmetric(prior, online, 20, blocks=4)
    empty = ReplayBuffer(spec, 1, 10)
    assert (sample_symmetric(prior, empty, 8)["observation"]["state"] == 1).all()
    with pytest.raises(ValueError, match="empty replay buffer"):
        empty.sample(4)


def test_replay_ring_buffer_overwrites_oldest():
    buf = ReplayBuffer({"state": ((2,), np.float32)}, 1, capacity=5)
    for i in range(8):
        buf.add({"state": np.full(2, i)}, np.zeros(1), float(i), {"state": np.full(2, i + 1)}, False)
    assert len(buf) == 5
    assert sorted(buf.reward.tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0]


class PointReach(gym.Env):
    """A point in [-1, 1]^2 must reach the origin (within 0.1): sparse reward, terminates on success."""

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, 2)
        self.t = 0
        return self.pos.astype(np.float32), {}

    def step(self, action):
        self.pos = np.clip(self.pos + 0.2 * np.asarray(action), -1, 1)
        self.t += 1
        success = np.linalg.norm(self.pos) < 0.1
        return self.pos.astype(np.float32), float(success), bool(success), self.t >= 20, {"success": success}


def run_point_reach(agent: SACAgent, buffer: ReplayBuffer, env: gym.Env, steps: int, rng: np.random.Generator):
    obs, _ = env.reset(seed=int(rng.integers(1000)))
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        action = agent.act({"state": obs})
        nxt, reward, term, trunc, _ = env.step(action)
        buffer.add({"state": obs}, action, reward, {"state": nxt}, term)
        obs = nxt
        if term or trunc:
            obs, _ = env.reset(seed=int(rng.integers(1000)))
        if len(buffer) >= 64:
            agent.update(buffer.sample(agent.config.utd * agent.config.batch_size, g))


def evaluate_point_reach(agent: SACAgent, episodes: int = 30) -> float:
    env, successes = PointReach(), 0
    for ep in range(episodes):
        obs, _ = env.reset(seed=10_000 + ep)
        for _ in range(20):
            obs, reward, term, trunc, _ = env.step(agent.act({"state": obs}, deterministic=True))
            if term:
                successes += 1
                break
    return successes / episodes


def test_learner_solves_sparse_point_reach():
    """Without demos, from sparse reward alone: a random policy succeeds ~10% of the time here."""
    cfg = SACConfig(hidden_dims=[64, 64], utd=2, batch_size=64, discount=0.9, compile=False)
    agent = SACAgent({"state": 2}, 2, cfg, seed=0)
    assert evaluate_point_reach(agent) < 0.5
    run_point_reach(
        agent, ReplayBuffer({"state": ((2,), np.float32)}, 2, 10_000), PointReach(), 3000, np.random.default_rng(0)
    )
    assert evaluate_point_reach(agent) >= 0.9


def test_checkpoint_reloads_exactly(tmp_path):
    cfg = SACConfig(ensemble_size=4, critic_subsample=2, utd=2, batch_size=32, hidden_dims=[32, 32], compile=False)
    batches = [random_batch(64, seed=s) for s in range(6)]
    agent = SACAgent({"state": 6}, 2, cfg, seed=3)
    for b in batches[:3]:
        agent.update(b)
    torch.save(agent.state_dict(), tmp_path / "ckpt.pt")
    for b in batches[3:]:
        agent.update(b)
    restored = SACAgent({"state": 6}, 2, cfg, seed=99)  # different init, different RNG
    restored.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=False))
    for b in batches[3:]:
        restored.update(b)
    for a, r in zip(agent.state_dict()["critic"].values(), restored.state_dict()["critic"].values()):
        assert torch.equal(a, r)
    for a, r in zip(agent.actor.parameters(), restored.actor.parameters()):
        assert torch.equal(a, r)
    obs = {"state": np.ones(6, np.float32)}
    assert np.array_equal(agent.act(obs), restored.act(obs))  # sampling RNG restored too


def test_incompatible_checkpoint_is_one_line_error():
    small = SACAgent({"state": 6}, 2, SACConfig(hidden_dims=[32, 32], compile=False))
    big = SACAgent({"state": 6}, 2, SACConfig(hidden_dims=[64, 64], compile=False))
    with pytest.raises(ValueError, match="incompatible checkpoint: it has hidden_dims=\\[32, 32\\]") as err:
        big.load_state_dict(small.state_dict())
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("critic_loss", ["mse", "hl_gauss"])
def test_compiled_update_matches_eager(critic_loss):
    cfg = dict(ensemble_size=4, critic_subsample=2, utd=2, batch_size=32, hidden_dims=[32, 32])
    cfg.update(critic_loss=critic_loss, value_range=[0.0, 1.0] if critic_loss == "hl_gauss" else None)
    eager = SACAgent({"state": 6}, 2, SACConfig(compile=False, **cfg), seed=5)
    compiled = SACAgent({"state": 6}, 2, SACConfig(compile=True, **cfg), seed=5)
    for s in range(3):
        eager.update(random_batch(64, seed=s))
        compiled.update(random_batch(64, seed=s))
    for a, c in zip(eager.critic.parameters(), compiled.critic.parameters()):
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-5)


def test_bounded_inputs_are_scaled_to_unit_range():
    bounds = {"state": (np.array([0.3, -0.25, -np.inf]), np.array([0.7, 0.25, np.inf]))}
    agent = SACAgent({"state": 3}, 2, SACConfig(compile=False), obs_bounds=bounds)
    encoded = agent.encode({"state": torch.tensor([[0.3, 0.25, 5.0], [0.5, 0.0, -2.0]])})
    torch.testing.assert_close(encoded, torch.tensor([[-1.0, 1.0, 5.0], [0.0, 0.0, -2.0]]))
    other = SACAgent({"state": 3}, 2, SACConfig(compile=False))  # trained without bounds
    with pytest.raises(ValueError, match="observation bounds"):
        other.load_state_dict(agent.state_dict())


def test_learner_builds_image_agent_from_observation_space(tmp_path):
    from robot_rl.data.schema import EpisodeSource, Transition
    from robot_rl.runtime.learner import Learner

    space = spaces.Dict(
        {"state": spaces.Box(-1.0, 1.0, (3,), np.float32), "image/front": spaces.Box(0, 255, (16, 16, 3), np.uint8)}
    )
    cfg = SACConfig(utd=2, batch_size=8, hidden_dims=[32, 32], compile=False, grasp_critic=True)
    learner = Learner(space, 3, cfg, capacity=64, seed=0)
    assert learner.agent.image_keys == ["image/front"] and learner.agent.policy_dim == 2
    rng = np.random.default_rng(0)
    obs = {k: v.sample() for k, v in space.spaces.items()}
    for i in range(20):
        nxt = {
            "state": rng.uniform(-1, 1, 3).astype(np.float32),
            "image/front": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
        }
        action = learner.agent.act(obs)
        assert action[-1] in (-1.0, 0.0, 1.0)
        learner.add(
            Transition(obs, action, 0.0, False, i % 10 == 9, nxt, action, grasp_penalty=-0.1),
            EpisodeSource.DEMO if i < 10 else EpisodeSource.ONLINE,
        )
        obs = nxt
    info = learner.update()
    assert np.isfinite(info["critic_loss"]) and np.isfinite(info["grasp_loss"])
    learner.save(tmp_path / "ckpt.pt", {"env_steps": 20})
    assert learner.load(tmp_path / "ckpt.pt") == {"env_steps": 20}
    bad = spaces.Dict({"depth": spaces.Box(0.0, 1.0, (16, 16, 1), np.float32)})
    with pytest.raises(ValueError, match="neither a float vector nor a uint8"):
        Learner(bad, 3, cfg, capacity=8)


# ---------------------------------------------------------------------------------------- HL-Gauss
def test_hl_gauss_targets_are_gaussian_mass_over_the_bins():
    from robot_rl.agents.hl_gauss import HLGauss

    hl = HLGauss(0.0, 1.0, 51, 0.75)
    y = torch.tensor([0.0, 0.3, 0.5, 1.0, -4.0, 7.0])
    probs = hl.target_probs(y)
    assert probs.shape == (6, 51) and (probs >= 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(6))
    mean = probs @ hl.centers
    torch.testing.assert_close(mean[1:3], y[1:3], atol=1e-4, rtol=0)  # inside: centred on the target
    assert mean[0] > 0.0 and mean[3] < 1.0  # at the ends: the mass kept inside the range
    torch.testing.assert_close(probs[4], probs[0])  # out-of-range targets are clamped
    torch.testing.assert_close(probs[5], probs[3])
    width = 1.0 / 51
    spread = ((hl.centers - 0.5).square() @ probs[2]).sqrt()
    assert 0.7 * width < spread < 0.9 * width  # sigma 0.75 bin widths (+ the bins' own width)
    logits = torch.log(probs[1:3].clamp_min(1e-30))
    torch.testing.assert_close(hl.expectation(logits), y[1:3], atol=1e-4, rtol=0)
    # the loss is smallest at the target's own distribution
    assert hl.loss(logits, y[1:3]).sum() < hl.loss(logits.flip(0), y[1:3]).sum()


def test_hl_gauss_critic_stays_in_its_value_range_and_learns():
    cfg = SACConfig(
        critic_loss="hl_gauss", value_range=[0.0, 1.0], utd=2, batch_size=32, hidden_dims=[32, 32], compile=False
    )
    agent = SACAgent({"state": 6}, 2, cfg, seed=0)
    assert agent.critic.out.weight.shape == (2, 32, 51)
    with torch.no_grad():
        agent.critic.out.weight.mul_(1e3)  # extreme logits: Q still inside the range
    q = agent.critic(torch.randn(100, 6) * 10, torch.rand(100, 2) * 2 - 1)
    assert q.shape == (2, 100) and (q >= 0).all() and (q <= 1).all()
    agent = SACAgent({"state": 6}, 2, cfg, seed=0)
    batch = random_batch(64)
    batch["terminated"] = torch.ones(64)  # Q(s, a) = r: regression through classification
    losses = [agent.update(batch)["critic_loss"] for _ in range(600)]  # MSE: 300 updates to this error
    assert losses[-1] < losses[0]
    with torch.no_grad():
        q = agent.critic(agent.encode(batch["observation"]), batch["action"]).mean(0)
    assert (q - batch["reward"]).abs().mean() < 0.1


def test_value_range_clips_the_td_targets():
    cfg = SACConfig(value_range=[0.0, 1.0], utd=1, batch_size=16, hidden_dims=[16, 16], compile=False)
    agent = SACAgent({"state": 6}, 2, cfg, seed=0)
    batch = random_batch(16)
    batch["reward"] = torch.full((16,), 50.0)  # far above the range: the target is 1
    obs, next_obs = agent.encode(batch["observation"]), agent.encode(batch["next_observation"])
    loss = agent._critic_loss(
        obs, batch["action"], batch["reward"], next_obs, batch["terminated"], agent._noise(16), None
    )
    with torch.no_grad():
        expected = (agent.critic(obs, batch["action"]) - 1.0).square().mean(dim=1).sum()
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(critic_loss="huber"), "agent.critic_loss='huber' must be mse or hl_gauss"),
        (dict(critic_loss="hl_gauss"), "agent.critic_loss=hl_gauss needs agent.value_range"),
        (dict(critic_loss="hl_gauss", value_range=[0, 1], hl_gauss_bins=1), "agent.hl_gauss_bins=1"),
        (dict(critic_loss="hl_gauss", value_range=[0, 1], hl_gauss_sigma=0.0), "agent.hl_gauss_sigma=0.0"),
        (dict(value_range=[1, 0]), "agent.value_range=\\[1, 0\\] must be \\[low, high\\]"),
        (dict(value_range=[0]), "agent.value_range=\\[0\\] must be"),
    ],
)
def test_bad_critic_loss_settings_are_one_line_errors(bad, match):
    with pytest.raises(ValueError, match=match) as err:
        SACConfig(**bad)
    assert "\n" not in str(err.value)


def test_checkpoint_of_another_critic_loss_is_refused():
    mse = SACAgent({"state": 6}, 2, SACConfig(hidden_dims=[32, 32], compile=False))
    hl = SACAgent(
        {"state": 6}, 2, SACConfig(hidden_dims=[32, 32], critic_loss="hl_gauss", value_range=[0, 1], compile=False)
    )
    with pytest.raises(
        ValueError, match="incompatible checkpoint: it has critic_loss=mse, this agent critic_loss=hl_gauss"
    ):
        hl.load_state_dict(mse.state_dict())


def test_a_critic_only_update_leaves_actor_and_temperature():
    cfg = SACConfig(utd=2, batch_size=16, hidden_dims=[16, 16], compile=False)
    agent = SACAgent({"state": 6}, 2, cfg, seed=0)
    actor = [p.detach().clone() for p in agent.actor.parameters()]
    critic = [p.detach().clone() for p in agent.critic.parameters()]
    temperature = agent.log_temperature.detach().clone()
    info = agent.update(random_batch(32), actor=False)
    assert "actor_loss" not in info and agent.num_updates == 2
    assert all(torch.equal(a, p) for a, p in zip(actor, agent.actor.parameters()))
    assert torch.equal(temperature, agent.log_temperature.detach())
    assert not all(torch.equal(c, p) for c, p in zip(critic, agent.critic.parameters()))
