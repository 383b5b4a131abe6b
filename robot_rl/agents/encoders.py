"""Image encoders for the SAC learner: one backbone per camera, features pooled by learned spatial
embeddings into a small bottleneck, concatenated with the scaled state vector.

Images arrive as uint8 [B, H, W, 3] (channels-last); the conversion to float happens here, on the
encoder's device. Backbones:

- `conv` (default): DrQ-like, one 3x3 conv (32 channels, padding 1) + ReLU per entry of `strides`.
- `resnet10`: a ResNet-10 (7x7 stem + max-pool, four stages of one basic residual block, widths
  64-128-256-512) with GroupNorm, so inference needs no batch statistics.

Pooling ("spatial learned embeddings", as in SERL): backbone features [C, H, W] are weighted by a
learned kernel [C, H, W, K] and summed over H, W, giving C*K numbers, then Linear -> LayerNorm -> tanh.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

ENCODERS = ("conv", "resnet10")
PRECISIONS = ("float32", "bfloat16")
NEXT_FEATURES = ("online", "target")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class EncoderConfig:
    """The `agent.encoder` config group (used only when the observation has images)."""

    name: str = "conv"  # conv | resnet10
    channels: int = 32  # conv: width of every layer
    # conv: one 3x3 conv per entry; [2, 2, 2, 1] maps 128x128 to 16x16 (DrQ's [2, 1, 1, 1] keeps 64x64:
    # about 8x the compute, too slow for a batch of 256 on a CPU)
    strides: list[int] = field(default_factory=lambda: [2, 2, 2, 1])
    spatial_features: int = 8  # K learned spatial embeddings per channel
    bottleneck: int = 256  # features per camera after Linear -> LayerNorm -> tanh
    weights: str | None = None  # local file: torch state_dict of one camera's backbone
    freeze: bool = False  # keep the loaded backbone fixed (needs weights)
    # the backbone's arithmetic in the learner's updates: float32 | bfloat16 (autocast; weights, optimiser and
    # everything after the backbone stay float32; acting and export always run float32)
    precision: str = "float32"
    # features of the next observation the next action is drawn from in the TD target: online (the online
    # encoder, a second pass over the next observation) | target (the target encoder's, which the target
    # critic reads anyway: one backbone pass less per critic update)
    next_features: str = "online"

    def __post_init__(self) -> None:
        if self.name not in ENCODERS:
            raise ValueError(f"agent.encoder.name={self.name!r} is not one of {', '.join(ENCODERS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"agent.encoder.precision={self.precision!r} must be one of {', '.join(PRECISIONS)}")
        if self.next_features not in NEXT_FEATURES:
            raise ValueError(
                f"agent.encoder.next_features={self.next_features!r} must be one of {', '.join(NEXT_FEATURES)}"
            )
        if self.freeze and not self.weights:
            raise ValueError("agent.encoder.freeze=true needs pretrained agent.encoder.weights=<path to a state_dict>")
        if (
            not self.strides
            or min(self.strides) < 1
            or self.channels < 1
            or self.spatial_features < 1
            or self.bottleneck < 1
        ):
            raise ValueError(
                "agent.encoder.strides must be a non-empty list of positive ints and "
                "channels, spatial_features, bottleneck positive"
            )


class ConvBackbone(nn.Module):
    """3x3 convs (padding 1) with ReLU; input float [B, 3, H, W]: pixels / 255 - 0.5."""

    INPUT_MEAN, INPUT_STD = (0.5, 0.5, 0.5), (1.0, 1.0, 1.0)  # of pixels / 255

    def __init__(self, channels: int = 32, strides: list[int] | tuple[int, ...] = (2, 2, 2, 1)):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for stride in strides:
            layers += [nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1), nn.ReLU(inplace=True)]
            in_channels = channels
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(4, channels), channels)


class BasicBlock(nn.Module):
    """Two 3x3 convs with GroupNorm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = group_norm(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), group_norm(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(y)) + self.shortcut(x))


class ResNet10Backbone(nn.Module):
    """ResNet-10: stem (7x7/2 conv, GroupNorm, ReLU, 3x3/2 max-pool), then one basic block per stage
    (widths 64, 128, 256, 512; strides 1, 2, 2, 2). Input float [B, 3, H, W]: pixels / 255
    normalised with the ImageNet mean and std (the convention of pretrained weights).
    128x128 -> [512, 4, 4]."""

    WIDTHS = (64, 128, 256, 512)
    INPUT_MEAN, INPUT_STD = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            group_norm(64),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        blocks, in_channels = [], 64
        for i, width in enumerate(self.WIDTHS):
            blocks.append(BasicBlock(in_channels, width, stride=1 if i == 0 else 2))
            in_channels = width
        self.stages = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


def make_backbone(config: EncoderConfig) -> nn.Module:
    if config.name == "conv":
        return ConvBackbone(config.channels, config.strides)
    return ResNet10Backbone()


def load_backbone_weights(backbone: nn.Module, path: str, name: str) -> None:
    """Load a local state_dict into `backbone`; one-line ValueError when missing or incompatible."""
    hint = f"save one with torch.save(backbone.state_dict(), path) for the '{name}' encoder"
    if not Path(path).is_file():
        raise ValueError(f"agent.encoder.weights={path} does not exist: give a local file ({hint})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated file, pickled objects, not a torch file
        raise ValueError(f"agent.encoder.weights={path} cannot be read ({type(err).__name__}): {hint}") from None
    if not isinstance(state, dict):
        raise ValueError(f"agent.encoder.weights={path} holds a {type(state).__name__}, not a state_dict: {hint}")
    try:
        backbone.load_state_dict(state)
    except RuntimeError as err:
        reason = " ".join(str(err).split())[:200]
        raise ValueError(f"agent.encoder.weights={path} does not fit the '{name}' encoder ({reason}): {hint}") from None


class SpatialEmbedding(nn.Module):
    """Features [B, C, H, W] -> [B, C*K] by a learned [C, H, W, K] weighting summed over H, W."""

    def __init__(self, channels: int, height: int, width: int, num_features: int):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(channels, height, width, num_features) / (height * width) ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # one bmm with the channel as batch: [C, B, H*W] @ [C, H*W, K] -> [C, B, K]; 3x faster than
        # einsum on channels-last conv output (which it would copy and contract in a slow order)
        batch, c = x.shape[:2]
        kernel = self.kernel.reshape(c, -1, self.kernel.shape[-1])
        pooled = torch.bmm(x.transpose(0, 1).reshape(c, batch, -1), kernel)
        return pooled.transpose(0, 1).flatten(1)


class CameraEncoder(nn.Module):
    """One camera: uint8 [B, H, W, 3] -> float [B, bottleneck] in (-1, 1)."""

    def __init__(self, image_shape: tuple[int, int, int], config: EncoderConfig):
        super().__init__()
        height, width, channels = image_shape
        if channels != 3:
            raise ValueError(f"images must be [H, W, 3] uint8, got shape {tuple(image_shape)}")
        self.backbone = make_backbone(config)
        if config.weights:
            load_backbone_weights(self.backbone, config.weights, config.name)
        self.frozen = config.freeze
        self.backbone.requires_grad_(not self.frozen)
        # uint8 pixel p -> (p / 255 - mean) / std as one fused multiply-add: p * scale + shift
        mean, std = torch.tensor(self.backbone.INPUT_MEAN), torch.tensor(self.backbone.INPUT_STD)
        self.register_buffer("scale", (1.0 / (255.0 * std)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", (-mean / std).view(1, 3, 1, 1), persistent=False)
        with torch.no_grad():
            c, h, w = self.backbone(torch.zeros(1, 3, height, width)).shape[1:]
        self.pool = SpatialEmbedding(c, h, w, config.spatial_features)
        self.project = nn.Linear(c * config.spatial_features, config.bottleneck)
        self.norm = nn.LayerNorm(config.bottleneck)

    def features(self, image: torch.Tensor, bfloat16: bool = False) -> torch.Tensor:
        """Backbone features [B, C, H', W'] (computed without autograd when frozen); float32 even when
        `bfloat16` runs the backbone in bfloat16 (autocast)."""
        # uint8 [B, H, W, 3] -> float as one multiply-add over the contiguous channels-last pixels (vectorised:
        # 7x faster than over the permuted view at 64x64), then viewed as [B, 3, H, W] in channels_last memory
        # format (convs run faster)
        x = torch.addcmul(self.shift.view(3), image, self.scale.view(3))
        if bfloat16:  # rounded once (a uint8 x bfloat16 multiply-add is not vectorised)
            x = x.to(torch.bfloat16)
        x = x.permute(0, 3, 1, 2)
        with torch.no_grad() if self.frozen else contextlib.nullcontext():
            if not bfloat16:
                return self.backbone(x)
            with torch.autocast(image.device.type, dtype=torch.bfloat16):  # the convolutions run in bfloat16
                return self.backbone(x).float()

    def forward(
        self, image: torch.Tensor, features: torch.Tensor | None = None, bfloat16: bool = False
    ) -> torch.Tensor:
        """`features`: this camera's backbone features when already computed (frozen backbones);
        `bfloat16`: the backbone in bfloat16 (the pooling and projection stay float32)."""
        features = self.features(image, bfloat16) if features is None else features
        return torch.tanh(self.norm(self.project(self.pool(features))))


class ObservationEncoder(nn.Module):
    """Observation dict -> one feature vector: per-camera features (in `image_shapes` order), then the
    vector keys (in `vector_dims` order) concatenated and mapped affinely by `center`/`inv_scale`."""

    def __init__(
        self,
        image_shapes: dict[str, tuple[int, int, int]],
        vector_dims: dict[str, int],
        config: EncoderConfig,
        center: torch.Tensor | None = None,
        inv_scale: torch.Tensor | None = None,
    ):
        super().__init__()
        self.image_keys = list(image_shapes)
        self.vector_keys = list(vector_dims)
        self.cameras = nn.ModuleList(CameraEncoder(tuple(image_shapes[k]), config) for k in self.image_keys)
        state_dim = sum(vector_dims.values())
        self.register_buffer("center", torch.zeros(state_dim) if center is None else center.detach().clone())
        self.register_buffer("inv_scale", torch.ones(state_dim) if inv_scale is None else inv_scale.detach().clone())
        self.output_dim = config.bottleneck * len(self.image_keys) + state_dim

    @property
    def frozen(self) -> bool:
        """Whether every camera's backbone is frozen (then an EMA copy keeps identical backbones)."""
        return bool(self.cameras) and all(camera.frozen for camera in self.cameras)

    def backbone_features(self, observation: dict[str, torch.Tensor], bfloat16: bool = False) -> list[torch.Tensor]:
        return [camera.features(observation[k], bfloat16) for k, camera in zip(self.image_keys, self.cameras)]

    def forward(
        self,
        observation: dict[str, torch.Tensor],
        backbone_features: list[torch.Tensor] | None = None,
        bfloat16: bool = False,
    ) -> torch.Tensor:
        """Features [B, output_dim]; `backbone_features` (from `backbone_features()`, of this or an
        encoder with the same frozen backbones) skips the backbones; `bfloat16` runs them in bfloat16."""
        features = backbone_features or [None] * len(self.cameras)
        parts = [camera(observation[k], f, bfloat16) for k, camera, f in zip(self.image_keys, self.cameras, features)]
        if self.vector_keys:
            state = torch.cat([observation[k] for k in self.vector_keys], dim=-1)
            parts.append((state - self.center) * self.inv_scale)
        return torch.cat(parts, dim=-1)
