"""HL-Gauss: a critic trained by classification (Farebrother et al. 2024, "Stop Regressing").

The value range [low, high] is cut into `bins` equal bins; the critic outputs one logit per bin and its Q is
the expectation of the bin centres under their softmax, so a Q can never leave the range. A scalar TD target
y becomes a distribution over the bins: the mass that a Gaussian N(y, sigma^2) puts in each bin (normalised
over the range), sigma = `sigma` bin widths (0.75 in the paper: the mass spreads over about 6 bins). The critic
minimises the cross-entropy to it.
"""

from __future__ import annotations

import math

import torch


class HLGauss:
    """Bin edges and centres of a value range, and the target distributions over them."""

    def __init__(self, low: float, high: float, bins: int, sigma: float):
        """`bins` >= 2 over [low, high], low < high, sigma > 0 (SACConfig checks the agent's settings)."""
        self.low, self.high, self.bins = float(low), float(high), int(bins)
        width = (self.high - self.low) / self.bins
        self.sigma = float(sigma) * width  # in value units
        self.edges = torch.linspace(self.low, self.high, self.bins + 1)
        self.centers = (self.edges[:-1] + self.edges[1:]) / 2

    def to(self, device: torch.device) -> HLGauss:
        self.edges, self.centers = self.edges.to(device), self.centers.to(device)
        return self

    def target_probs(self, y: torch.Tensor) -> torch.Tensor:
        """[..., bins]: the Gaussian mass of each bin around the (clamped) scalar targets `y` [...]."""
        y = y.clamp(self.low, self.high).unsqueeze(-1)
        cdf = torch.special.erf((self.edges - y) / (self.sigma * math.sqrt(2.0)))
        mass = cdf[..., 1:] - cdf[..., :-1]
        return mass / (cdf[..., -1:] - cdf[..., :1])

    def expectation(self, logits: torch.Tensor) -> torch.Tensor:
        """[...]: Q, the bin centres' expectation under softmax(`logits`) [..., bins]."""
        return torch.softmax(logits, dim=-1) @ self.centers

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[...]: cross-entropy of softmax(`logits`) [..., bins] against the targets of `y`, whose shape
        broadcasts against logits' leading dims (one target per row serves every ensemble member)."""
        return -(self.target_probs(y) * torch.log_softmax(logits, dim=-1)).sum(-1)
