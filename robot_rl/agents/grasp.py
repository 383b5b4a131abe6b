"""HIL-SERL's discrete grasp critic: a Q-network over three gripper actions beside the continuous
arm policy, trained by double DQN on reward + grasp penalty.

Class order (fixed; checkpoints depend on it): 0 = close, 1 = stay, 2 = open. The env's gripper
command is sticky (> +0.5 closes, < -0.5 opens, in between keeps the current state), so the classes
execute as +1.0, 0.0 and -1.0, and a recorded gripper command maps back to its class by the same
thresholds.
"""

from __future__ import annotations

import torch
from torch import nn

from robot_rl.agents.networks import mlp

CLOSE, STAY, OPEN = 0, 1, 2
NUM_GRASP_ACTIONS = 3
GRIPPER_COMMANDS = (1.0, 0.0, -1.0)  # env gripper value executed for classes close, stay, open


def gripper_to_class(gripper: torch.Tensor) -> torch.Tensor:
    """Executed gripper commands -> class indices (int64): > 0.5 close, < -0.5 open, else stay."""
    classes = torch.full(gripper.shape, STAY, dtype=torch.long, device=gripper.device)
    classes[gripper > 0.5] = CLOSE
    classes[gripper < -0.5] = OPEN
    return classes


def class_to_gripper(classes: torch.Tensor) -> torch.Tensor:
    """Class indices -> the gripper command to execute (float32: +1, 0, -1)."""
    return torch.tensor(GRIPPER_COMMANDS, dtype=torch.float32, device=classes.device)[classes]


class GraspCritic(nn.Module):
    """Q(s, .) over the three gripper classes: LayerNorm MLP + linear head, [B, in] -> [B, 3]."""

    def __init__(self, in_dim: int, hidden_dims: list[int]):
        super().__init__()
        self.trunk = mlp(in_dim, hidden_dims)
        self.head = nn.Linear(hidden_dims[-1], NUM_GRASP_ACTIONS)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(features))


def double_dqn_target(
    reward: torch.Tensor,
    grasp_penalty: torch.Tensor,
    terminated: torch.Tensor,
    discount: float,
    next_q_online: torch.Tensor,
    next_q_target: torch.Tensor,
) -> torch.Tensor:
    """r + penalty + discount * (1 - terminated) * Q_target(s', argmax_a Q_online(s', a)).

    The online network picks the next action and the target network evaluates it (double DQN),
    which removes the max operator's overestimation of plain DQN targets."""
    best = next_q_online.argmax(dim=-1, keepdim=True)
    next_value = next_q_target.gather(-1, best).squeeze(-1)
    return reward + grasp_penalty + discount * (1.0 - terminated) * next_value


def grasp_td_loss(
    critic: GraspCritic,
    target_critic: GraspCritic,
    features: torch.Tensor,
    classes: torch.Tensor,
    reward: torch.Tensor,
    grasp_penalty: torch.Tensor,
    terminated: torch.Tensor,
    next_features: torch.Tensor,
    next_target_features: torch.Tensor,
    discount: float,
) -> torch.Tensor:
    """Mean squared TD error of Q(s, a_taken) against the double-DQN target. `next_features` come
    from the online encoder (for the argmax), `next_target_features` from the target encoder."""
    with torch.no_grad():
        target = double_dqn_target(
            reward, grasp_penalty, terminated, discount, critic(next_features), target_critic(next_target_features)
        )
    q = critic(features).gather(-1, classes.unsqueeze(-1)).squeeze(-1)
    return (q - target).square().mean()
