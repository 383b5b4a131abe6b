"""The image learner's CPU speed options (`agent.encoder.precision`, `agent.encoder.next_features`): bfloat16
updates stay finite and close to float32, the target-features option runs one backbone pass less and is exact
where the encoders agree, bad values are refused in one line, and checkpoints load across the settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from test_encoders import SMALL, image_batch, image_obs

from robot_rl.agents.encoders import EncoderConfig, ObservationEncoder
from robot_rl.agents.sac import SACAgent, SACConfig
from robot_rl.config import typed

SHAPES = {"image/front": (32, 32, 3), "image/wrist": (32, 32, 3)}


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: oneDNN's bfloat16 kernels slow down by 10-100x when their threads outnumber the
    cores they get (the suite runs pinned to one core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def agent(seed: int = 0, **encoder) -> SACAgent:
    return SACAgent({**SHAPES, "state": 3}, 2, SACConfig(encoder=EncoderConfig(**encoder), **SMALL), seed=seed)


def test_bfloat16_backbone_is_close_to_float32_and_really_bfloat16():
    encoder = ObservationEncoder(SHAPES, {"state": 3}, EncoderConfig(bottleneck=16))
    obs = image_obs(8, SHAPES, 3)
    full = encoder(obs)
    low = encoder(obs, bfloat16=True)
    assert low.dtype == torch.float32 and low.shape == full.shape  # float32 after the backbone
    diff = (low - full).abs().max().item()
    assert 0 < diff < 0.05  # rounded (bfloat16 keeps 8 bits), but the same features
    features = encoder.cameras[0].features(obs["image/front"], bfloat16=True)
    assert features.dtype == torch.float32


def test_bfloat16_updates_are_finite_and_follow_float32():
    batch = image_batch(16, SHAPES)
    full, low = agent(), agent(precision="bfloat16")
    start = [p.detach().clone() for p in full.encoder.parameters()]
    for reference, other in zip(start, low.encoder.parameters()):
        assert torch.equal(reference, other)  # the same initial weights: only the arithmetic differs
    infos = [a.update(batch) for a in (full, low)]
    assert all(np.isfinite(v) for info in infos for v in info.values())
    assert infos[1]["critic_loss"] == pytest.approx(infos[0]["critic_loss"], rel=0.05)
    for before, p, q in zip(start, full.encoder.parameters(), low.encoder.parameters()):
        assert p.dtype == q.dtype == torch.float32  # weights and optimiser stay float32
        step_full, step_low = (p.detach() - before).flatten(), (q.detach() - before).flatten()
        assert torch.isfinite(step_low).all() and step_low.abs().max() > 0
        cosine = torch.nn.functional.cosine_similarity(step_full, step_low, dim=0)
        assert cosine > 0.9  # the same update direction (Adam's first steps: about lr * sign(grad))
    for _ in range(3):  # and it keeps training
        assert np.isfinite(low.update(image_batch(16, SHAPES, seed=_ + 1))["critic_loss"])
    action = low.act({k: v[0].numpy() for k, v in image_obs(1, SHAPES, 3).items()}, deterministic=True)
    assert np.isfinite(action).all()


def count_backbone_calls(encoder: ObservationEncoder) -> list[int]:
    calls = [0]
    for camera in encoder.cameras:
        camera.backbone.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("next_features,online_passes", [("online", 2), ("target", 1)])
def test_target_next_features_skip_one_online_pass(next_features, online_passes):
    a = agent(next_features=next_features)
    online, target = count_backbone_calls(a.encoder), count_backbone_calls(a.target_encoder)
    a.update(image_batch(16, SHAPES))
    critic_updates, cameras = SMALL["utd"], len(SHAPES)
    assert online[0] == critic_updates * cameras * online_passes
    assert target[0] == critic_updates * cameras


def test_target_next_features_equal_online_ones_while_the_encoders_agree():
    """At the first update the target encoder is a copy of the online one: both settings give the same loss
    and the same weights after it (the option changes only which copy the next action reads)."""
    batch = image_batch(8, SHAPES)
    cfg = dict(SMALL, utd=1)
    pair = [
        SACAgent({**SHAPES, "state": 3}, 2, SACConfig(encoder=EncoderConfig(next_features=n), **cfg), seed=3)
        for n in ("online", "target")
    ]
    infos = [a.update(batch) for a in pair]
    assert infos[0]["critic_loss"] == pytest.approx(infos[1]["critic_loss"], rel=1e-6)
    for p, q in zip(pair[0].encoder.parameters(), pair[1].encoder.parameters()):
        torch.testing.assert_close(p, q)
    # later the target lags the online encoder and the two settings part
    later = [a.update(image_batch(8, SHAPES, seed=5)) for a in pair]
    assert later[0]["critic_loss"] != later[1]["critic_loss"]


@pytest.mark.parametrize(
    "key,value",
    [("precision", "float16"), ("precision", "bf16"), ("next_features", "both"), ("next_features", "Target")],
)
def test_bad_values_are_one_line_errors(key, value):
    with pytest.raises(ValueError, match=f"agent.encoder.{key}=") as err:
        typed(OmegaConf.create({"encoder": {key: value}}), SACConfig, "agent")
    assert "\n" not in str(err.value) and "must be one of" in str(err.value)


def test_checkpoints_load_across_the_settings():
    """Neither setting changes a weight's shape or dtype: a float32/online checkpoint resumes under
    bfloat16/target (and back) with every weight, the optimiser moments and the update count."""
    source = agent(seed=4)
    source.update(image_batch(16, SHAPES))
    state = source.state_dict()
    other = agent(seed=9, precision="bfloat16", next_features="target")
    other.load_state_dict(state)
    assert other.num_updates == source.num_updates
    for p, q in zip(source.encoder.state_dict().values(), other.encoder.state_dict().values()):
        assert torch.equal(p, q)
    obs = {k: v[0].numpy() for k, v in image_obs(1, SHAPES, 3, seed=2).items()}
    np.testing.assert_array_equal(source.act(obs, deterministic=True), other.act(obs, deterministic=True))
    assert np.isfinite(other.update(image_batch(16, SHAPES, seed=1))["critic_loss"])
    back = agent(seed=5)
    back.load_state_dict(other.state_dict())
    np.testing.assert_array_equal(back.act(obs, deterministic=True), other.act(obs, deterministic=True))
