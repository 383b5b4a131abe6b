"""Networks for the SAC learner: a vectorised critic ensemble and a tanh-Gaussian actor.

The critic ensemble is one module whose weights carry a leading ensemble dimension, so all
members run in one batched matmul per layer (`torch.baddbmm`), not a Python loop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.agents.hl_gauss import HLGauss


class EnsembleLinear(nn.Module):
    """`ensemble_size` independent linear layers applied as one batched matmul: [E,B,in] -> [E,B,out]."""

    def __init__(self, ensemble_size: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default init, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        if members is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias[members], x, self.weight[members])


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over features with a separate affine transform per ensemble member."""

    def __init__(self, ensemble_size: int, features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ensemble_size, 1, features))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, features))

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        normed = F.layer_norm(x, x.shape[-1:])
        if members is None:
            return torch.addcmul(self.bias, normed, self.weight)
        return torch.addcmul(self.bias[members], normed, self.weight[members])


class CriticEnsemble(nn.Module):
    """Q(s, a) for an ensemble of critics: MLP with LayerNorm + ReLU, all members batched.

    `forward` returns [E, B]; with `members` (an index tensor) only those members run: [len(members), B].
    With `hl_gauss`, each member outputs one logit per value bin (`logits`: [E, B, bins]) and Q is their
    expectation (agents/hl_gauss.py).
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dims: list[int],
        ensemble_size: int,
        hl_gauss: HLGauss | None = None,
    ):
        super().__init__()
        self.ensemble_size = ensemble_size
        self.hl_gauss = hl_gauss
        widths = [obs_dim + action_dim, *hidden_dims]
        self.linears = nn.ModuleList(EnsembleLinear(ensemble_size, a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(EnsembleLayerNorm(ensemble_size, b) for b in hidden_dims)
        self.out = EnsembleLinear(ensemble_size, widths[-1], 1 if hl_gauss is None else hl_gauss.bins)

    def logits(self, obs: torch.Tensor, action: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """The output layer: [E, B, 1] (a scalar Q) or [E, B, bins] (HL-Gauss logits)."""
        n = self.ensemble_size if members is None else len(members)
        x = torch.cat([obs, action], dim=-1).unsqueeze(0).expand(n, -1, -1)
        for linear, norm in zip(self.linears, self.norms):
            x = torch.relu(norm(linear(x, members), members))
        return self.out(x, members)

    def forward(self, obs: torch.Tensor, action: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        out = self.logits(obs, action, members)
        return out.squeeze(-1) if self.hl_gauss is None else self.hl_gauss.expectation(out)


def mlp(in_dim: int, hidden_dims: list[int], layer_norm: bool = True) -> nn.Sequential:
    """Linear (+ LayerNorm) + ReLU blocks."""
    layers: list[nn.Module] = []
    for width in hidden_dims:
        layers.append(nn.Linear(in_dim, width))
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        layers.append(nn.ReLU())
        in_dim = width
    return nn.Sequential(*layers)


class TanhGaussianActor(nn.Module):
    """pi(a|s): a Gaussian squashed by tanh into [-1, 1]^A."""

    LOG_STD_MIN = -5.0  # zero head output -> log-std -1.5 (std 0.22): entropy starts above -|A|/2
    LOG_STD_MAX = 2.0

    def __init__(self, obs_dim: int, action_dim: int, hidden_dims: list[int]):
        super().__init__()
        self.trunk = mlp(obs_dim, hidden_dims)
        self.head = nn.Linear(hidden_dims[-1], 2 * action_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-std of the pre-tanh Gaussian."""
        mean, log_std = self.head(self.trunk(obs)).chunk(2, dim=-1)
        log_std = self.LOG_STD_MIN + 0.5 * (self.LOG_STD_MAX - self.LOG_STD_MIN) * (torch.tanh(log_std) + 1.0)
        return mean, log_std
