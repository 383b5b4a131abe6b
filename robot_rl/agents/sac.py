"""SAC in the RLPD style: critic ensemble with LayerNorm, high update-to-data ratio, small initial
temperature, target entropy -|A|/2, soft target updates; one actor update per `utd` critic updates.

Image observations (DrQ): an `ObservationEncoder` (one backbone per camera) shared by actor and
critic, trained only through the critic loss (the actor sees detached features), with an EMA copy
for the target critic, and random-shift augmentation of observations and next observations.
Optionally (HIL-SERL) a discrete grasp critic drives the gripper, the last action dim.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from robot_rl.agents.augmentation import random_shift
from robot_rl.agents.encoders import EncoderConfig, ObservationEncoder
from robot_rl.agents.grasp import NUM_GRASP_ACTIONS, GraspCritic, class_to_gripper, grasp_td_loss, gripper_to_class
from robot_rl.agents.hl_gauss import HLGauss
from robot_rl.agents.networks import CriticEnsemble, TanhGaussianActor
from robot_rl.config import typed
from robot_rl.data.replay import Batch


@dataclass
class SACConfig:
    """Learner hyper-parameters (the `agent` config group)."""

    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    ensemble_size: int = 2
    critic_subsample: int = 2  # target = min over this many randomly chosen target critics
    utd: int = 4  # critic updates per env step
    batch_size: int = 256
    discount: float = 0.97
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 3e-4
    init_temperature: float = 0.01
    target_entropy: float | None = None  # None -> -|A| / 2
    backup_entropy: bool = False  # RLPD/SERL drop the entropy term from the critic target
    compile: bool = True  # torch.compile the losses
    encoder: EncoderConfig = field(default_factory=EncoderConfig)  # image observations only
    augmentation: bool = True  # random shift of images in the critic update (DrQ)
    grasp_critic: bool = False  # discrete close/stay/open critic for the last action dim (HIL-SERL)
    grasp_epsilon: float = 0.1  # exploration: random gripper class with this probability in act()
    value_range: list[float] | None = None  # [low, high]: the returns the task can give; TD targets clipped to it
    critic_loss: str = "mse"  # mse (regression) | hl_gauss (classification over value_range's bins)
    hl_gauss_bins: int = 51
    hl_gauss_sigma: float = 0.75  # the target Gaussian's width, in bin widths

    def __post_init__(self) -> None:
        if not 1 <= self.critic_subsample <= self.ensemble_size:
            raise ValueError(
                f"agent.critic_subsample={self.critic_subsample} must be in 1..agent.ensemble_size "
                f"({self.ensemble_size}): lower the subsample or enlarge the ensemble"
            )
        if self.utd < 1 or self.batch_size < 2:
            raise ValueError("agent.utd must be >= 1 and agent.batch_size >= 2")
        if not 0.0 <= self.grasp_epsilon <= 1.0:
            raise ValueError(f"agent.grasp_epsilon={self.grasp_epsilon} must be in [0, 1]")
        if self.value_range is not None:
            low_high = list(self.value_range)
            if (
                len(low_high) != 2
                or not all(isinstance(v, (int, float)) for v in low_high)
                or low_high[0] >= low_high[1]
            ):
                raise ValueError(
                    f"agent.value_range={self.value_range} must be [low, high] with low < high (the returns the "
                    "task can give, e.g. [0, 1] for a sparse success reward), or null"
                )
            self.value_range = [float(v) for v in low_high]
        if self.critic_loss not in ("mse", "hl_gauss"):
            raise ValueError(f"agent.critic_loss={self.critic_loss!r} must be mse or hl_gauss")
        if self.critic_loss == "hl_gauss":
            if self.value_range is None:
                raise ValueError(
                    "agent.critic_loss=hl_gauss needs agent.value_range=[low,high], the returns the task can give "
                    "(e.g. [0,1] for a sparse success reward that ends the episode)"
                )
            if not isinstance(self.hl_gauss_bins, int) or self.hl_gauss_bins < 2 or not self.hl_gauss_sigma > 0:
                raise ValueError(
                    f"agent.hl_gauss_bins={self.hl_gauss_bins} must be an integer >= 2 and "
                    f"agent.hl_gauss_sigma={self.hl_gauss_sigma} > 0 (bin widths; 0.75 is the paper's)"
                )
        if isinstance(self.encoder, Mapping):  # built from a plain dict (e.g. a checkpoint's config)
            self.encoder = EncoderConfig(**self.encoder)


def agent_config(cfg: DictConfig) -> SACConfig:
    """The `agent` config group, typed: a one-line error names a bad key or value."""
    return typed(cfg.agent, SACConfig, "agent")


class SACAgent:
    """Actor, critic ensemble, target critics and temperature, with their optimisers.

    `obs_dims` maps each observation key to an int (a float vector of that length) or to an image
    shape (H, W, 3) (uint8, channels-last). Vector keys are concatenated (in order) and each entry
    with finite `obs_bounds` (low, high) is mapped affinely onto [-1, 1], so that centimetres of a
    position in metres are as visible to the networks as a unit of an action. With image keys, an
    `ObservationEncoder` turns images + scaled vectors into the features that actor and critics read.

    With `config.grasp_critic`, `action_dim` is the env's action size A and its last dim is the
    gripper: the continuous actor and critics act on the first A-1 dims and the grasp critic picks
    close/stay/open for the last one (see robot_rl/agents/grasp.py).
    """

    def __init__(
        self,
        obs_dims: Mapping[str, int | Sequence[int]],
        action_dim: int,
        config: SACConfig,
        device: str | torch.device = "cpu",
        seed: int = 0,
        obs_bounds: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ):
        self.config = config
        self.device = torch.device(device)
        self.obs_dims = normalise_obs_dims(obs_dims)
        self.obs_keys = list(self.obs_dims)
        self.image_keys = [k for k, v in self.obs_dims.items() if isinstance(v, tuple)]
        vector_dims = {k: v for k, v in self.obs_dims.items() if isinstance(v, int)}
        self.action_dim = action_dim
        self.grasp = config.grasp_critic
        if self.grasp and action_dim < 2:
            raise ValueError(f"agent.grasp_critic=true needs arm and gripper action dims, the env has {action_dim}")
        self.policy_dim = action_dim - 1 if self.grasp else action_dim  # continuous dims of actor/critic
        self.obs_center, self.obs_inv_scale = input_scaling(vector_dims, obs_bounds or {}, self.device)
        torch.manual_seed(seed)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.encoder: ObservationEncoder | None = None
        self.target_encoder: ObservationEncoder | None = None
        feature_dim = sum(vector_dims.values())
        if self.image_keys:
            self.encoder = ObservationEncoder(
                {k: self.obs_dims[k] for k in self.image_keys},
                vector_dims,
                config.encoder,
                self.obs_center,
                self.obs_inv_scale,
            ).to(self.device)
            self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
            feature_dim = self.encoder.output_dim
        self.actor = TanhGaussianActor(feature_dim, self.policy_dim, config.hidden_dims).to(self.device)
        self.hl_gauss = None
        if config.critic_loss == "hl_gauss":
            low, high = config.value_range
            self.hl_gauss = HLGauss(low, high, config.hl_gauss_bins, config.hl_gauss_sigma).to(self.device)
        self.critic = CriticEnsemble(
            feature_dim, self.policy_dim, config.hidden_dims, config.ensemble_size, self.hl_gauss
        ).to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_temperature = torch.tensor(
            np.log(config.init_temperature), dtype=torch.float32, device=self.device, requires_grad=True
        )
        self.target_entropy = config.target_entropy if config.target_entropy is not None else -self.policy_dim / 2
        fused = self.device.type in ("cpu", "cuda")
        # the critic optimiser also trains the encoder: it learns from the critic loss only (DrQ)
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.target_critic.parameters())
        if self.encoder is not None:
            target_encoder = dict(self.target_encoder.named_parameters())
            trainable = [(name, p) for name, p in self.encoder.named_parameters() if p.requires_grad]
            self._critic_params += [p for _, p in trainable]
            self._target_params += [target_encoder[name] for name, _ in trainable]
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, fused=fused)
        self.critic_optim = torch.optim.Adam(self._critic_params, lr=config.critic_lr, fused=fused)
        self.temperature_optim = torch.optim.Adam([self.log_temperature], lr=config.temperature_lr)
        self.grasp_critic: GraspCritic | None = None
        self.target_grasp_critic: GraspCritic | None = None
        if self.grasp:
            self.grasp_critic = GraspCritic(feature_dim, config.hidden_dims).to(self.device)
            self.target_grasp_critic = copy.deepcopy(self.grasp_critic).requires_grad_(False)
            self.grasp_optim = torch.optim.Adam(self.grasp_critic.parameters(), lr=config.critic_lr, fused=fused)
            self._grasp_params = list(self.grasp_critic.parameters())
            self._grasp_target_params = list(self.target_grasp_critic.parameters())
        self.num_updates = 0  # critic updates done
        # The losses are compiled into fused kernels (LayerNorm + ReLU + ensemble matmuls): 1.3x the
        # eager update rate on 2 CPU cores (bench/learner_throughput.py); `agent.compile=false` skips
        # the one-off compile time (about 20 s). The image encoder runs eagerly; its features enter
        # the compiled critic loss as inputs that carry gradients.
        self._critic_loss_fn = torch.compile(self._critic_loss, dynamic=False) if config.compile else self._critic_loss
        self._actor_loss_fn = torch.compile(self._actor_loss, dynamic=False) if config.compile else self._actor_loss

    # ---- acting -------------------------------------------------------------------------------
    def encode(self, observation: dict[str, torch.Tensor]) -> torch.Tensor:
        """Observation dict (batched tensors) -> the feature vector actor and critics read."""
        if self.encoder is not None:
            return self.encoder(observation)
        if len(self.obs_keys) == 1:
            x = observation[self.obs_keys[0]]
        else:
            x = torch.cat([observation[k] for k in self.obs_keys], dim=-1)
        return (x - self.obs_center) * self.obs_inv_scale

    @torch.inference_mode()
    def act(self, observation: dict[str, np.ndarray], deterministic: bool = False) -> np.ndarray:
        """One env action for one observation (float32[A] in [-1, 1]; with the grasp critic, the
        last dim is +1 close, 0 stay or -1 open: greedy, or epsilon-greedy unless `deterministic`)."""
        obs = {k: torch.as_tensor(observation[k], device=self.device).unsqueeze(0) for k in self.obs_keys}
        features = self.encode(obs)
        mean, log_std = self.actor(features)
        if not deterministic:
            mean = mean + log_std.exp() * torch.randn(mean.shape, generator=self.generator, device=self.device)
        action = torch.tanh(mean)[0]
        if self.grasp:
            choice = self.grasp_critic(features)[0].argmax()
            if not deterministic:
                explore = torch.rand((), generator=self.generator, device=self.device) < self.config.grasp_epsilon
                random_choice = torch.randint(NUM_GRASP_ACTIONS, (), generator=self.generator, device=self.device)
                choice = torch.where(explore, random_choice, choice)
            action = torch.cat([action, class_to_gripper(choice).unsqueeze(0)])
        return action.cpu().numpy()

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.detach().exp()

    # ---- learning -----------------------------------------------------------------------------
    def _noise(self, rows: int) -> torch.Tensor:
        return torch.randn((rows, self.policy_dim), generator=self.generator, device=self.device)

    def _members(self) -> torch.Tensor | None:
        cfg = self.config
        if cfg.critic_subsample < cfg.ensemble_size:
            members = torch.randperm(cfg.ensemble_size, generator=self.generator, device=self.device)
            return members[: cfg.critic_subsample]
        return None

    def _policy(self, obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised tanh-Gaussian action for the given standard-normal noise, and its log-prob."""
        mean, log_std = self.actor(obs)
        pre_tanh = mean + log_std.exp() * noise
        log_prob = (-0.5 * noise.square() - log_std).sum(-1) - 0.5 * np.log(2 * np.pi) * noise.shape[-1]
        # log(1 - tanh(x)^2) = 2 (log 2 - x - softplus(-2x)), numerically stable
        log_prob = log_prob - (2.0 * (np.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(-1)
        return torch.tanh(pre_tanh), log_prob

    def _critic_loss(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        terminated: torch.Tensor,
        noise: torch.Tensor,
        members: torch.Tensor | None,
        target_next_obs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """TD loss summed over the ensemble. `obs`/`next_obs` are features; `target_next_obs` (the
        target encoder's features of the next observation) defaults to `next_obs`."""
        cfg = self.config
        with torch.no_grad():
            next_action, next_log_prob = self._policy(next_obs, noise)
            target_in = next_obs if target_next_obs is None else target_next_obs
            next_q = self.target_critic(target_in, next_action, members).min(dim=0).values
            if cfg.backup_entropy:
                next_q = next_q - self.log_temperature.exp() * next_log_prob
            target = reward + cfg.discount * (1.0 - terminated) * next_q
        if self.hl_gauss is not None:  # one target distribution per row (clamped to the range), for every member
            return self.hl_gauss.loss(self.critic.logits(obs, action), target).mean(dim=1).sum()
        if cfg.value_range is not None:
            target = target.clamp(cfg.value_range[0], cfg.value_range[1])
        q = self.critic(obs, action)
        return (q - target).square().mean(dim=1).sum()

    def _actor_loss(self, obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        action, log_prob = self._policy(obs, noise)
        q = self.critic(obs, action).mean(dim=0)
        return (self.log_temperature.detach().exp() * log_prob - q).mean(), log_prob, q

    def _optimise_critic(self, loss: torch.Tensor) -> None:
        self.critic_optim.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optim.step()
        soft_update(self._target_params, self._critic_params, self.config.tau)
        self.num_updates += 1

    def _critic_step(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        terminated: torch.Tensor,
    ) -> torch.Tensor:
        """One critic update of the state agent (inputs are already-scaled vectors)."""
        members = self._members()
        loss = self._critic_loss_fn(obs, action, reward, next_obs, terminated, self._noise(len(obs)), members)
        self._optimise_critic(loss)
        return loss.detach()

    def _image_critic_step(
        self,
        obs: dict[str, torch.Tensor],
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: dict[str, torch.Tensor],
        terminated: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One critic + encoder update from (augmented) observation dicts. Returns the loss and the
        features it used (obs detached, next obs by the online and by the target encoder), which the
        grasp and actor updates reuse: all are computed at the same, pre-update parameters (as SERL). With
        `encoder.next_features=target` the next observation's features are the target encoder's for both."""
        low = self.config.encoder.precision == "bfloat16"
        features = self.encoder(obs, bfloat16=low)
        with torch.no_grad():
            # frozen backbones are the same in the online and the target encoder: run them once
            shared = self.encoder.backbone_features(next_obs, low) if self.encoder.frozen else None
            next_target_features = self.target_encoder(next_obs, shared, low)
            if self.config.encoder.next_features == "target":
                next_features = next_target_features
            else:
                next_features = self.encoder(next_obs, shared, low)
        members = self._members()
        loss = self._critic_loss_fn(
            features, action, reward, next_features, terminated, self._noise(len(action)), members, next_target_features
        )
        self._optimise_critic(loss)
        return loss.detach(), features.detach(), next_features, next_target_features

    def _grasp_step(
        self,
        features: torch.Tensor,
        gripper: torch.Tensor,
        reward: torch.Tensor,
        grasp_penalty: torch.Tensor,
        terminated: torch.Tensor,
        next_features: torch.Tensor,
        next_target_features: torch.Tensor,
    ) -> torch.Tensor:
        """One double-DQN update of the grasp critic. It runs after every critic update on that
        update's slice and features, so it learns at the critic's UTD ratio at no extra encoder cost.
        The features are detached: the encoder learns from the continuous critic's loss only (DrQ),
        not from this sparse three-way TD loss, whose gradient scale differs."""
        loss = grasp_td_loss(
            self.grasp_critic,
            self.target_grasp_critic,
            features,
            gripper_to_class(gripper),
            reward,
            grasp_penalty,
            terminated,
            next_features,
            next_target_features,
            self.config.discount,
        )
        self.grasp_optim.zero_grad(set_to_none=True)
        loss.backward()
        self.grasp_optim.step()
        soft_update(self._grasp_target_params, self._grasp_params, self.config.tau)
        return loss.detach()

    def _actor_step(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Actor and temperature update on features `obs` (detached: no gradient reaches the encoder)."""
        obs = obs.detach()
        self.critic.requires_grad_(False)
        actor_loss, log_prob, q = self._actor_loss_fn(obs, self._noise(len(obs)))
        self.actor_optim.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optim.step()
        self.critic.requires_grad_(True)
        temperature_loss = -(self.log_temperature * (log_prob.detach() + self.target_entropy)).mean()
        self.temperature_optim.zero_grad(set_to_none=True)
        temperature_loss.backward()
        self.temperature_optim.step()
        return {"actor_loss": actor_loss.detach(), "entropy": -log_prob.detach().mean(), "q": q.detach().mean()}

    def _augment(self, observation: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.config.augmentation:
            return observation
        return {k: random_shift(v, self.generator) if k in self.image_keys else v for k, v in observation.items()}

    def update(self, batch: Batch, actor: bool = True) -> dict[str, float]:
        """`utd` critic updates on consecutive slices of `batch` (utd x batch_size rows), each
        followed by a grasp-critic update on the same slice when enabled, then one actor and
        temperature update on the last slice. Returns scalar diagnostics. (With symmetric sampling,
        each slice must itself be half demos, half online: `sample_symmetric` with `blocks=utd`
        arranges that.) An absent `grasp_penalty` counts as zeros."""
        cfg = self.config
        n = cfg.batch_size
        if len(batch["reward"]) < cfg.utd * n:
            raise ValueError(f"update needs utd*batch_size={cfg.utd * n} rows, got {len(batch['reward'])}")
        action, reward, terminated = batch["action"], batch["reward"], batch["terminated"]
        arm_action = action[:, :-1] if self.grasp else action
        if self.encoder is None:
            obs = self.encode(batch["observation"])
            next_obs = self.encode(batch["next_observation"])
        else:  # augmented once for all slices: each row gets its own shift, obs and next obs independently
            obs = self._augment(batch["observation"])
            next_obs = self._augment(batch["next_observation"])
        info: dict[str, torch.Tensor] = {}
        for i in range(cfg.utd):
            rows = slice(i * n, (i + 1) * n)
            if self.encoder is None:
                critic_loss = self._critic_step(
                    obs[rows], arm_action[rows], reward[rows], next_obs[rows], terminated[rows]
                )
                features, next_features, next_target_features = obs[rows], next_obs[rows], next_obs[rows]
            else:
                critic_loss, features, next_features, next_target_features = self._image_critic_step(
                    {k: v[rows] for k, v in obs.items()},
                    arm_action[rows],
                    reward[rows],
                    {k: v[rows] for k, v in next_obs.items()},
                    terminated[rows],
                )
            if self.grasp:
                penalty = batch.get("grasp_penalty")
                penalty = torch.zeros_like(reward[rows]) if penalty is None else penalty[rows]
                info["grasp_loss"] = self._grasp_step(
                    features,
                    action[rows, -1],
                    reward[rows],
                    penalty,
                    terminated[rows],
                    next_features,
                    next_target_features,
                )
        if actor:
            info.update(self._actor_step(features))
        info["critic_loss"] = critic_loss
        info["temperature"] = self.temperature
        return {k: float(v) for k, v in info.items()}

    # ---- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        optional = lambda module: None if module is None else module.state_dict()
        return {
            "config": asdict(self.config),
            "obs_dims": self.obs_dims,
            "action_dim": self.action_dim,
            "obs_center": self.obs_center.cpu(),
            "obs_inv_scale": self.obs_inv_scale.cpu(),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "encoder": optional(self.encoder),
            "target_encoder": optional(self.target_encoder),
            "grasp_critic": optional(self.grasp_critic),
            "target_grasp_critic": optional(self.target_grasp_critic),
            "grasp_optim": self.grasp_optim.state_dict() if self.grasp else None,
            "log_temperature": self.log_temperature.detach().clone(),
            "actor_optim": self.actor_optim.state_dict(),
            "critic_optim": self.critic_optim.state_dict(),
            "temperature_optim": self.temperature_optim.state_dict(),
            "generator": self.generator.get_state(),
            "num_updates": self.num_updates,
        }

    def _architecture(self, config: dict, obs_dims: Mapping) -> dict:
        """What a checkpoint must match to load: shapes of every network."""
        arch = {
            "obs_dims": {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in obs_dims.items()},
            "ensemble_size": config["ensemble_size"],
            "hidden_dims": list(config["hidden_dims"]),
            "grasp_critic": bool(config.get("grasp_critic", False)),
            "critic_loss": config.get("critic_loss", "mse"),
        }
        if arch["critic_loss"] == "hl_gauss":
            arch["hl_gauss_bins"] = config.get("hl_gauss_bins")
            arch["value_range"] = list(config.get("value_range") or [])
        if self.image_keys:
            encoder = config.get("encoder") or {}
            for key in ("name", "channels", "strides", "spatial_features", "bottleneck"):
                value = encoder.get(key)
                arch[f"encoder.{key}"] = list(value) if isinstance(value, (tuple, list)) else value
        return arch

    def check_compatible(
        self,
        state: dict,
        fix: str = "use the config the checkpoint was trained with or start a new run_dir",
        bounds: bool = True,
    ) -> None:
        """A one-line ValueError (ending in `fix`) unless the checkpoint `state` has this agent's network
        shapes and (with `bounds`) observation bounds."""
        mine = {"action_dim": self.action_dim, **self._architecture(asdict(self.config), self.obs_dims)}
        theirs = {"action_dim": state["action_dim"], **self._architecture(state["config"], state["obs_dims"])}
        for key in mine:
            if mine[key] != theirs[key]:
                raise ValueError(
                    f"incompatible checkpoint: it has {key}={theirs[key]}, this agent {key}={mine[key]}; {fix}"
                )
        if bounds and not self.same_scaling(state):
            raise ValueError(
                "incompatible checkpoint: it was trained with other observation bounds (task "
                "workspace or limits changed); use the task config it was trained with"
            )

    def same_scaling(self, state: dict) -> bool:
        """The checkpoint `state` scales inputs as this agent does (the same observation bounds)."""
        return torch.equal(state["obs_center"], self.obs_center.cpu()) and torch.equal(
            state["obs_inv_scale"], self.obs_inv_scale.cpu()
        )

    def load_networks(self, state: dict, fix: str, optimizers: bool = False) -> None:
        """Fine-tuning's warm start: the networks, input scaling and temperature of the checkpoint `state`
        (actor, critic ensemble, target critics, encoders, grasp critics, log temperature), but fresh optimiser
        moments, this agent's own sampling RNG and no critic updates counted (see robot_rl/runtime/finetune.py).
        The input scaling is the checkpoint's even where this task's observation bounds differ: the networks
        were trained on inputs scaled that way."""
        self.check_compatible(state, fix, bounds=False)
        self._load_modules(state)
        if optimizers:  # finetune.optimizer=keep: the source's Adam moments too
            self._load_optimizers(state)

    def _load_modules(self, state: dict) -> None:
        self.obs_center.copy_(state["obs_center"])
        self.obs_inv_scale.copy_(state["obs_inv_scale"])
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        if self.encoder is not None:
            self.encoder.load_state_dict(state["encoder"])
            self.target_encoder.load_state_dict(state["target_encoder"])
        if self.grasp:
            self.grasp_critic.load_state_dict(state["grasp_critic"])
            self.target_grasp_critic.load_state_dict(state["target_grasp_critic"])
        with torch.no_grad():
            self.log_temperature.copy_(state["log_temperature"])

    def load_state_dict(self, state: dict, adopt_scaling: bool = False) -> None:
        """Restore everything, including optimiser moments and the sampling RNG, so training
        continues exactly as if never interrupted. Raises ValueError on an incompatible checkpoint.
        `adopt_scaling`: take the checkpoint's input scaling whatever this agent's observation bounds (a
        fine-tuned agent keeps its source's, `load_networks`); otherwise other bounds are an error."""
        self.check_compatible(state, bounds=not adopt_scaling)
        self._load_modules(state)
        self._load_optimizers(state)
        self.generator.set_state(state["generator"])
        self.num_updates = state["num_updates"]

    def _load_optimizers(self, state: dict) -> None:
        if self.grasp:
            self.grasp_optim.load_state_dict(state["grasp_optim"])
        self.actor_optim.load_state_dict(state["actor_optim"])
        try:
            self.critic_optim.load_state_dict(state["critic_optim"])
        except ValueError:  # the checkpoint trained another set of encoder parameters
            raise ValueError(
                "incompatible checkpoint: its encoder was trained with another agent.encoder.freeze; "
                "use the config the checkpoint was trained with"
            ) from None
        self.temperature_optim.load_state_dict(state["temperature_optim"])

    def _policy_modules(self) -> dict[str, torch.nn.Module]:
        """What `act` reads: the actor, the encoder (images) and the grasp critic (gripper)."""
        modules = {"actor": self.actor, "encoder": self.encoder, "grasp_critic": self.grasp_critic}
        return {name: module for name, module in modules.items() if module is not None}

    def policy_weights(self) -> dict[str, np.ndarray]:
        """The weights `act` needs, as named float arrays (what a learner ships to its actors)."""
        return {
            f"{name}.{key}": value.detach().cpu().numpy()
            for name, module in self._policy_modules().items()
            for key, value in module.state_dict().items()
        }

    def check_policy_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """A one-line ValueError unless `weights` are `policy_weights()` of an agent of this architecture
        (the same names and shapes, float arrays)."""
        expected = {
            f"{name}.{key}": tuple(value.shape)
            for name, module in self._policy_modules().items()
            for key, value in module.state_dict().items()
        }
        if set(weights) != set(expected) or any(tuple(np.shape(weights[k])) != shape for k, shape in expected.items()):
            raise ValueError(
                "policy weights do not fit this agent: actor and learner must use the same task and agent config"
            )

    def load_policy_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Load `policy_weights()` of an agent with the same architecture; a one-line ValueError otherwise."""
        self.check_policy_weights(weights)
        for name, module in self._policy_modules().items():
            theirs = {key[len(name) + 1 :]: value for key, value in weights.items() if key.startswith(name + ".")}
            module.load_state_dict({key: torch.as_tensor(value) for key, value in theirs.items()})


@torch.no_grad()
def soft_update(targets: list[torch.Tensor], sources: list[torch.Tensor], tau: float) -> None:
    """targets <- targets + tau * (sources - targets), in place and outside autograd: recorded, the
    in-place lerp would chain every update's history onto the target parameters (about 20 kB a critic
    update that is never freed)."""
    torch._foreach_lerp_(targets, sources, tau)


def normalise_obs_dims(obs_dims: Mapping[str, int | Sequence[int]]) -> dict[str, int | tuple[int, ...]]:
    """Vector keys as ints (a length, or a 1-dim shape), image keys as (H, W, C) tuples."""
    out: dict[str, int | tuple[int, ...]] = {}
    for key, dim in obs_dims.items():
        shape = (int(dim),) if isinstance(dim, (int, np.integer)) else tuple(int(d) for d in dim)
        if len(shape) not in (1, 3):
            raise ValueError(f"observation '{key}' has shape {shape}: the agent takes vectors [D] and images [H, W, 3]")
        out[key] = shape[0] if len(shape) == 1 else shape
    return out


def input_scaling(
    obs_dims: dict[str, int], obs_bounds: dict[str, tuple[np.ndarray, np.ndarray]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and inverse half-range per input entry; identity where a bound is missing or infinite."""
    centers, inv_scales = [], []
    for key, dim in obs_dims.items():
        low, high = (np.broadcast_to(np.asarray(b, np.float64), (dim,)) for b in obs_bounds.get(key, (-np.inf, np.inf)))
        finite = np.isfinite(low) & np.isfinite(high) & (high > low)
        low, high = np.where(finite, low, -1.0), np.where(finite, high, 1.0)  # identity where not finite
        centers.append((low + high) / 2)
        inv_scales.append(2.0 / (high - low))
    as_tensor = lambda parts: torch.tensor(
        np.concatenate(parts) if parts else np.zeros(0),
        dtype=torch.float32,
        device=device,
    )
    return as_tensor(centers), as_tensor(inv_scales)
