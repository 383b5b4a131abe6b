"""The discrete grasp critic (HIL-SERL): class mapping, double-DQN targets, acting, learning, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_rl.agents.grasp import (
    CLOSE,
    OPEN,
    STAY,
    GraspCritic,
    class_to_gripper,
    double_dqn_target,
    grasp_td_loss,
    gripper_to_class,
)
from robot_rl.agents.sac import SACAgent, SACConfig

torch.set_num_threads(2)

SMALL = dict(utd=2, batch_size=8, hidden_dims=[32, 32], compile=False, grasp_critic=True)


def test_gripper_class_mapping():
    gripper = torch.tensor([1.0, 0.51, 0.5, 0.0, -0.5, -0.51, -1.0])
    assert gripper_to_class(gripper).tolist() == [CLOSE, CLOSE, STAY, STAY, STAY, OPEN, OPEN]
    assert class_to_gripper(torch.tensor([CLOSE, STAY, OPEN])).tolist() == [1.0, 0.0, -1.0]
    assert torch.equal(gripper_to_class(class_to_gripper(torch.tensor([0, 1, 2]))), torch.tensor([0, 1, 2]))


def test_double_dqn_target_on_given_q_tables():
    # online net picks argmax: row 0 -> 1 (q 5), row 1 -> 2 (q 4); the target net evaluates those
    next_q_online = torch.tensor([[1.0, 5.0, 2.0], [3.0, 0.0, 4.0], [0.0, 2.0, 1.0]])
    next_q_target = torch.tensor([[10.0, 20.0, 30.0], [40.0, 50.0, 60.0], [7.0, -3.0, 9.0]])
    reward = torch.tensor([1.0, 0.0, 0.5])
    penalty = torch.tensor([-0.1, 0.0, -0.2])
    terminated = torch.tensor([0.0, 1.0, 0.0])
    target = double_dqn_target(reward, penalty, terminated, 0.9, next_q_online, next_q_target)
    # row 0: 1 - 0.1 + 0.9 * 20 = 18.9; row 1: terminal -> 0; row 2: 0.5 - 0.2 + 0.9 * (-3) = -2.4
    torch.testing.assert_close(target, torch.tensor([18.9, 0.0, -2.4]))
    # plain DQN (max of the target net) would give 1 - 0.1 + 0.9 * 30 = 27.9 for row 0: not what we use
    assert abs(target[0].item() - 27.9) > 1


def test_grasp_td_loss_with_set_weights():
    """Nets whose head ignores the input (zero weights): Q(s, .) = head bias for every s."""
    online, target = GraspCritic(2, [4]), GraspCritic(2, [4])
    with torch.no_grad():
        for net, bias in ((online, [1.0, 5.0, 2.0]), (target, [10.0, 20.0, 30.0])):
            net.head.weight.zero_()
            net.head.bias.copy_(torch.tensor(bias))
    features = torch.randn(2, 2)
    classes = gripper_to_class(torch.tensor([0.9, -0.9]))  # close, open
    loss = grasp_td_loss(
        online,
        target,
        features,
        classes,
        reward=torch.tensor([1.0, 0.0]),
        grasp_penalty=torch.tensor([-0.1, 0.0]),
        terminated=torch.tensor([0.0, 1.0]),
        next_features=torch.randn(2, 2),
        next_target_features=torch.randn(2, 2),
        discount=0.9,
    )
    # targets: 1 - 0.1 + 0.9 * 20 = 18.9 and 0 (terminal); Q(s, taken) = bias[close] = 1, bias[open] = 2
    assert loss.item() == pytest.approx(((1 - 18.9) ** 2 + (2 - 0) ** 2) / 2, rel=1e-6)


def state_batch(rows: int, gripper: torch.Tensor, reward: torch.Tensor, g: torch.Generator) -> dict:
    return {
        "observation": {"state": torch.randn(rows, 4, generator=g)},
        "next_observation": {"state": torch.randn(rows, 4, generator=g)},
        "action": torch.cat([torch.rand(rows, 2, generator=g) * 2 - 1, gripper.unsqueeze(1)], dim=1),
        "reward": reward,
        "terminated": torch.ones(rows),
    }


def test_grasp_agent_acts_with_a_discrete_gripper():
    agent = SACAgent({"state": 4}, 3, SACConfig(grasp_epsilon=1.0, **SMALL), seed=0)
    assert agent.policy_dim == 2 and agent.target_entropy == -1.0  # the continuous part drops the gripper
    assert agent.critic.linears[0].weight.shape[1] == 4 + 2
    obs = {"state": np.zeros(4, np.float32)}
    grippers = set()
    for _ in range(60):
        action = agent.act(obs)
        assert action.shape == (3,) and action.dtype == np.float32 and np.all(np.abs(action) <= 1)
        grippers.add(float(action[-1]))
    assert grippers == {-1.0, 0.0, 1.0}  # epsilon 1: uniformly random classes
    greedy = agent.grasp_critic(agent.encode({"state": torch.zeros(1, 4)})).argmax().item()
    assert agent.act(obs, deterministic=True)[-1] == [1.0, 0.0, -1.0][greedy]


def test_grasp_critic_learns_which_gripper_action_pays():
    """A one-step bandit: closing pays 1, staying 0, opening -1 via the grasp penalty."""
    agent = SACAgent({"state": 4}, 3, SACConfig(grasp_epsilon=0.0, **SMALL), seed=0)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        gripper = class_to_gripper(torch.randint(0, 3, (16,), generator=g))
        batch = state_batch(16, gripper, (gripper > 0.5).float(), g)
        batch["grasp_penalty"] = -(gripper < -0.5).float()
        agent.update(batch)
    q = agent.grasp_critic(agent.encode({"state": torch.randn(32, 4, generator=g)})).detach()
    torch.testing.assert_close(q.mean(0), torch.tensor([1.0, 0.0, -1.0]), atol=0.15, rtol=0)
    assert agent.act({"state": np.zeros(4, np.float32)}, deterministic=True)[-1] == 1.0
    # without a grasp_penalty in the batch it counts as zero
    gripper = class_to_gripper(torch.randint(0, 3, (16,), generator=g))
    assert np.isfinite(agent.update(state_batch(16, gripper, torch.zeros(16), g))["grasp_loss"])


def test_image_grasp_agent_checkpoint_round_trip(tmp_path):
    shapes = {"image/front": (16, 16, 3), "image/wrist": (12, 16, 3)}
    obs_dims = {**shapes, "state": 4}
    cfg = SACConfig(**SMALL)

    def batch(seed: int) -> dict:
        g = torch.Generator().manual_seed(seed)
        obs = lambda: {
            **{
                k: torch.randint(0, 256, (16, *s), dtype=torch.uint8, generator=g)  # noqa: E731
                for k, s in shapes.items()
            },
            "state": torch.randn(16, 4, generator=g),
        }
        gripper = class_to_gripper(torch.randint(0, 3, (16,), generator=g))
        return {
            "observation": obs(),
            "next_observation": obs(),
            "action": torch.cat([torch.rand(16, 2, generator=g) * 2 - 1, gripper[:, None]], 1),
            "reward": torch.rand(16, generator=g),
            "terminated": torch.zeros(16),
            "grasp_penalty": -0.1 * (gripper != 0).float(),
        }

    agent = SACAgent(obs_dims, 3, cfg, seed=3)
    agent.update(batch(0))
    torch.save(agent.state_dict(), tmp_path / "ckpt.pt")
    agent.update(batch(1))
    restored = SACAgent(obs_dims, 3, cfg, seed=99)
    restored.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=False))
    restored.update(batch(1))
    mine, theirs = agent.state_dict(), restored.state_dict()
    for part in ("encoder", "target_encoder", "critic", "actor", "grasp_critic", "target_grasp_critic"):
        for name, value in mine[part].items():
            assert torch.equal(value, theirs[part][name]), f"{part}.{name}"
    obs = {k: v[0].numpy() for k, v in batch(2)["observation"].items()}
    action = agent.act(obs)
    assert np.array_equal(action, restored.act(obs)) and action[-1] in (-1.0, 0.0, 1.0)
    no_grasp = SACAgent(obs_dims, 3, SACConfig(**{**SMALL, "grasp_critic": False}))
    with pytest.raises(ValueError, match="incompatible checkpoint: it has grasp_critic=True"):
        no_grasp.load_state_dict(agent.state_dict())
