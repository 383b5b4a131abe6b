"""The success classifier: one conv encoder per camera (the learner's CameraEncoder), an MLP head,
one logit. A checkpoint holds the weights, the cameras and image shapes, the encoder config and the
decision threshold, so `SuccessClassifier.load(path)` rebuilds it without any other config.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robot_rl.agents.encoders import EncoderConfig, ObservationEncoder

FORMAT_NAME = "robot_rl.success_classifier"
FORMAT_VERSION = 1


class SuccessClassifier(nn.Module):
    """Camera images -> probability of task success. A frame counts as success when its probability
    is >= `threshold` (chosen on validation data for a target precision)."""

    def __init__(
        self,
        image_shapes: dict[str, tuple[int, int, int]],
        encoder: EncoderConfig | None = None,
        hidden: int = 256,
        threshold: float = 0.5,
    ) -> None:
        """`image_shapes`: `{observation key (e.g. "image/front"): (H, W, 3)}`, the cameras it reads."""
        super().__init__()
        if not image_shapes:
            raise ValueError("a success classifier needs at least one camera")
        self.image_shapes = {k: tuple(int(d) for d in s) for k, s in image_shapes.items()}
        self.encoder_config = encoder or EncoderConfig()
        self.hidden = int(hidden)
        self.threshold = float(threshold)
        self.encoder = ObservationEncoder(self.image_shapes, {}, self.encoder_config)
        self.head = nn.Sequential(nn.Linear(self.encoder.output_dim, self.hidden), nn.ReLU(), nn.Linear(self.hidden, 1))

    @property
    def image_keys(self) -> list[str]:
        return list(self.image_shapes)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, images: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits [B] from uint8 images `{key: [B, H, W, 3]}` on this module's device."""
        return self.head(self.encoder(images)).squeeze(-1)

    @torch.no_grad()
    def probabilities(self, images: dict[str, np.ndarray], batch_size: int = 256) -> np.ndarray:
        """Success probabilities float64[N] of N frames given as `{key: uint8[N, H, W, 3]}`."""
        was_training = self.training
        self.eval()
        n = len(images[self.image_keys[0]])
        out = np.empty(n, np.float64)
        for s in range(0, n, batch_size):
            batch = {
                k: torch.as_tensor(np.asarray(images[k][s : s + batch_size]), device=self.device)
                for k in self.image_keys
            }
            out[s : s + batch_size] = torch.sigmoid(self(batch).double()).cpu().numpy()
        self.train(was_training)
        return out

    def probability(self, observation: dict[str, np.ndarray]) -> float:
        """Success probability of one observation (extra keys such as "state" are ignored)."""
        missing = [k for k in self.image_keys if k not in observation]
        if missing:
            raise KeyError(
                f"observation has no {missing[0]!r}, which the success classifier reads "
                f"(it needs {', '.join(self.image_keys)})"
            )
        return float(self.probabilities({k: np.asarray(observation[k])[None] for k in self.image_keys})[0])

    def is_success(self, observation: dict[str, np.ndarray]) -> bool:
        return self.probability(observation) >= self.threshold

    def set_output_bias(self, probability: float) -> None:
        """Make the classifier output `probability` for every input (zero last layer, bias = logit);
        for tests and dry runs."""
        with torch.no_grad():
            self.head[-1].weight.zero_()
            self.head[-1].bias.fill_(math.log(probability / (1.0 - probability)))

    def save(self, path: str | os.PathLike, **extra) -> None:
        """Write the checkpoint (weights, cameras, image shapes, encoder config, threshold, `extra`)."""
        encoder = asdict(self.encoder_config)
        encoder["weights"], encoder["freeze"] = None, False  # the weights are in the state dict
        torch.save(
            {
                "format": {"name": FORMAT_NAME, "version": FORMAT_VERSION},
                "image_shapes": {k: list(s) for k, s in self.image_shapes.items()},
                "encoder": encoder,
                "hidden": self.hidden,
                "threshold": self.threshold,
                "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
                "extra": extra,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> SuccessClassifier:
        """A classifier saved by `save`, in eval mode on `device`; one-line errors for a bad file."""
        hint = "train one with `robot-rl train-classifier data=<store> run_dir=<dir>` (<dir>/classifier.pt)"
        if not Path(path).is_file():
            raise FileNotFoundError(f"no success classifier at {path}: {hint}")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated file, not a torch file
            raise ValueError(f"{path} is not a readable success classifier ({type(err).__name__}): {hint}") from None
        fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
        if not isinstance(fmt, dict) or fmt.get("name") != FORMAT_NAME:
            raise ValueError(f"{path} is not a success classifier checkpoint: {hint}")
        if int(fmt.get("version", 0)) > FORMAT_VERSION:
            raise ValueError(
                f"success classifier {path} has format version {fmt['version']}, newer than this "
                f"robot_rl reads ({FORMAT_VERSION}): upgrade robot_rl"
            )
        model = cls(
            {k: tuple(s) for k, s in ckpt["image_shapes"].items()},
            EncoderConfig(**ckpt["encoder"]),
            hidden=ckpt["hidden"],
            threshold=ckpt["threshold"],
        )
        model.load_state_dict(ckpt["state_dict"])
        return model.to(device).eval()
