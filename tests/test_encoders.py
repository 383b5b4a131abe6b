"""Image encoders, random-shift augmentation and the image agent (DrQ-style encoder training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from robot_rl.agents.augmentation import random_shift, shift_padding
from robot_rl.agents.encoders import ConvBackbone, EncoderConfig, ObservationEncoder, ResNet10Backbone
from robot_rl.agents.sac import SACAgent, SACConfig

torch.set_num_threads(2)

SMALL = dict(utd=2, batch_size=8, hidden_dims=[32, 32], compile=False)


def image_obs(rows: int, shapes: dict[str, tuple[int, int, int]], state_dim: int | None, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    obs = {k: torch.randint(0, 256, (rows, *s), dtype=torch.uint8, generator=g) for k, s in shapes.items()}
    if state_dim:
        obs["state"] = torch.randn(rows, state_dim, generator=g)
    return obs


def image_batch(rows: int, shapes: dict, state_dim: int = 3, action_dim: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed + 100)
    return {
        "observation": image_obs(rows, shapes, state_dim, seed),
        "next_observation": image_obs(rows, shapes, state_dim, seed + 1),
        "action": torch.rand(rows, action_dim, generator=g) * 2 - 1,
        "reward": torch.rand(rows, generator=g),
        "terminated": (torch.rand(rows, generator=g) < 0.1).float(),
    }


@pytest.mark.parametrize("name", ["conv", "resnet10"])
@pytest.mark.parametrize(
    "shapes,state_dim",
    [
        ({}, 5),  # no camera: state only
        ({"image/front": (32, 32, 3)}, None),  # one camera, no state
        ({"image/front": (32, 32, 3), "image/wrist": (24, 40, 3)}, 7),  # two cameras of different sizes
    ],
)
def test_observation_encoder_output_shape(name, shapes, state_dim):
    cfg = EncoderConfig(name=name, bottleneck=16, spatial_features=4)
    encoder = ObservationEncoder(shapes, {"state": state_dim} if state_dim else {}, cfg)
    out = encoder(image_obs(3, shapes, state_dim))
    assert out.shape == (3, 16 * len(shapes) + (state_dim or 0))
    assert out.dtype == torch.float32
    assert encoder.output_dim == out.shape[1]
    camera_part = out[:, : 16 * len(shapes)]
    assert (camera_part.abs() < 1).all()  # tanh bottleneck
    if shapes:  # features depend on the image
        other = image_obs(3, shapes, state_dim, seed=1)
        assert not torch.allclose(encoder(other)[:, :16], camera_part[:, :16])


def test_state_part_is_scaled():
    center, inv_scale = torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.5])
    encoder = ObservationEncoder({"image/a": (16, 16, 3)}, {"state": 2}, EncoderConfig(bottleneck=8), center, inv_scale)
    obs = image_obs(2, {"image/a": (16, 16, 3)}, None)
    obs["state"] = torch.tensor([[2.0, 4.0], [1.0, -2.0]])
    torch.testing.assert_close(encoder(obs)[:, 8:], torch.tensor([[2.0, 2.0], [0.0, -1.0]]))


def test_pixels_are_normalised_for_each_backbone():
    from robot_rl.agents.encoders import IMAGENET_MEAN, IMAGENET_STD, CameraEncoder

    image = torch.tensor([0, 255, 51], dtype=torch.uint8).expand(1, 16, 16, 3)  # R=0, G=255, B=51 everywhere
    conv = CameraEncoder((16, 16, 3), EncoderConfig())
    torch.testing.assert_close(
        torch.addcmul(conv.shift, image.permute(0, 3, 1, 2), conv.scale)[0, :, 0, 0], torch.tensor([-0.5, 0.5, -0.3])
    )
    resnet = CameraEncoder((16, 16, 3), EncoderConfig(name="resnet10"))
    expected = (torch.tensor([0.0, 1.0, 0.2]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(
        torch.addcmul(resnet.shift, image.permute(0, 3, 1, 2), resnet.scale)[0, :, 0, 0], expected
    )


def test_resnet10_backbone_on_128px_images():
    assert ResNet10Backbone()(torch.rand(1, 3, 128, 128)).shape == (1, 512, 4, 4)
    assert ConvBackbone(32, [2, 2, 2, 1])(torch.rand(1, 3, 128, 128)).shape == (1, 32, 16, 16)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_random_shift_is_a_crop_of_the_replicate_padded_image(dtype):
    batch, height, width, pad = 16, 12, 10, 2
    images = torch.arange(batch * height * width * 3).reshape(batch, height, width, 3).remainder(251).to(dtype)
    shifted = random_shift(images, torch.Generator().manual_seed(0), pad=pad)
    assert shifted.shape == images.shape and shifted.dtype == dtype
    padded = F.pad(images.permute(0, 3, 1, 2).float(), (pad,) * 4, mode="replicate").permute(0, 2, 3, 1)
    offsets = []
    for b in range(batch):  # each output is exactly one window of the padded image
        matches = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(padded[b, dy : dy + height, dx : dx + width], shifted[b].float())
        ]
        assert len(matches) == 1
        offsets.append(matches[0])
    assert len(set(offsets)) > 3  # images get their own shifts, and most are actual shifts
    assert sum(o != (pad, pad) for o in offsets) >= batch // 2
    again = random_shift(images, torch.Generator().manual_seed(0), pad=pad)
    assert torch.equal(again, shifted)  # reproducible from the generator
    assert not torch.equal(random_shift(images, torch.Generator().manual_seed(1), pad=pad), shifted)


def test_shift_padding_scales_with_image_size():
    assert shift_padding(84, 84) == 4 and shift_padding(128, 128) == 6 and shift_padding(8, 8) == 1


def test_image_agent_trains_encoder_through_critic_only():
    shapes = {"image/front": (16, 16, 3), "image/wrist": (20, 16, 3)}
    agent = SACAgent({**shapes, "state": 3}, 2, SACConfig(**SMALL), seed=0)
    encoder_before = [p.detach().clone() for p in agent.encoder.parameters()]
    target_before = [p.detach().clone() for p in agent.target_encoder.parameters()]
    info = agent.update(image_batch(16, shapes))
    assert agent.num_updates == 2 and np.isfinite(info["critic_loss"])
    for b, p, t, tp in zip(
        encoder_before, agent.encoder.parameters(), target_before, agent.target_encoder.parameters()
    ):
        assert not torch.equal(b, p.detach())  # the critic loss trains every encoder parameter
        assert 0 < (tp - t).abs().max() <= (p.detach() - t).abs().max() + 1e-7  # EMA target follows slowly
    # the actor loss sends no gradient into the encoder (it reads detached features)
    agent.critic_optim.zero_grad(set_to_none=True)
    features = agent.encode(image_batch(8, shapes)["observation"])
    assert features.requires_grad
    agent._actor_step(features)
    assert all(p.grad is None for p in agent.encoder.parameters())
    assert all(p.grad is not None for p in agent.actor.parameters())
    # with a zero critic learning rate the encoder stays put while the actor learns
    frozen = SACAgent({**shapes, "state": 3}, 2, SACConfig(**{**SMALL, "critic_lr": 0.0}), seed=0)
    encoder_before = [p.detach().clone() for p in frozen.encoder.parameters()]
    actor_before = [p.detach().clone() for p in frozen.actor.parameters()]
    frozen.update(image_batch(16, shapes))
    assert all(torch.equal(b, p) for b, p in zip(encoder_before, frozen.encoder.parameters()))
    assert not all(torch.equal(b, p) for b, p in zip(actor_before, frozen.actor.parameters()))
    action = agent.act({k: v[0].numpy() for k, v in image_obs(1, shapes, 3).items()})
    assert action.shape == (2,) and np.all(np.abs(action) <= 1)


def test_frozen_pretrained_backbone_loads_and_stays_fixed(tmp_path):
    shapes = {"image/front": (16, 16, 3)}
    pretrained = ConvBackbone(8, [2, 1])
    torch.save(pretrained.state_dict(), tmp_path / "conv.pt")
    encoder_cfg = EncoderConfig(
        channels=8, strides=[2, 1], bottleneck=8, weights=str(tmp_path / "conv.pt"), freeze=True
    )
    agent = SACAgent({**shapes, "state": 3}, 2, SACConfig(encoder=encoder_cfg, **SMALL), seed=1)
    backbone = agent.encoder.cameras[0].backbone
    for (name, p), q in zip(backbone.named_parameters(), pretrained.parameters()):
        assert torch.equal(p, q) and not p.requires_grad, name
    head_before = agent.encoder.cameras[0].project.weight.detach().clone()
    agent.update(image_batch(16, shapes))
    assert all(p.grad is None for p in backbone.parameters())
    for p, q in zip(backbone.parameters(), pretrained.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(agent.target_encoder.cameras[0].backbone.parameters(), pretrained.parameters()):
        assert torch.equal(p, q)
    assert not torch.equal(head_before, agent.encoder.cameras[0].project.weight)  # the head still trains


def test_bad_weights_file_is_one_line_error(tmp_path):
    torch.save(ResNet10Backbone().state_dict(), tmp_path / "resnet.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    cases = {
        str(tmp_path / "resnet.pt"): "does not fit the 'conv' encoder",
        str(tmp_path / "missing.pt"): "does not exist",
        str(tmp_path / "junk.pt"): "cannot be read",
    }
    for path, message in cases.items():
        cfg = SACConfig(encoder=EncoderConfig(weights=path), **SMALL)
        with pytest.raises(ValueError, match=message) as err:
            SACAgent({"image/front": (16, 16, 3)}, 2, cfg)
        assert "\n" not in str(err.value) and path in str(err.value)


def test_encoder_config_through_omegaconf():
    from robot_rl.config import typed

    cfg = typed(
        OmegaConf.create(
            {
                "encoder": {"name": "resnet10", "weights": "w.pt", "freeze": True},
                "augmentation": False,
                "grasp_critic": True,
            }
        ),
        SACConfig,
        "agent",
    )
    assert cfg.encoder.name == "resnet10" and cfg.encoder.weights == "w.pt" and cfg.encoder.freeze
    assert cfg.encoder.strides == [2, 2, 2, 1] and not cfg.augmentation and cfg.grasp_critic
    with pytest.raises(ValueError, match="agent.encoder.name='vit'"):
        typed(OmegaConf.create({"encoder": {"name": "vit"}}), SACConfig, "agent")
    with pytest.raises(ValueError, match="freeze=true needs"):
        EncoderConfig(freeze=True)
