"""Fine-tuning from a pretrained run: `robot-rl train init_from=<run_dir> finetune=wsrl|keep_offline|reset`.

Modes (the `finetune` config group, configs/finetune/):
  - wsrl (Zhou et al. 2024, "Efficient Online RL Fine-Tuning Need Not Retain Offline Data"): the agent starts
    from the pretrained checkpoint's networks (actor, critic ensemble, target critics, encoders, grasp critics)
    and temperature; no demos are recorded and no offline data is kept, so RLPD's symmetric sampling becomes
    online-only (intervention steps of online episodes still go to the prior half, as in any run); the first
    `finetune.warmup_steps` env steps are the pretrained policy's own rollouts (sampled actions, as the actor
    acts) with no update, then online RL.
  - keep_offline: the same warm start, and the pretrained run's logged demo, online and intervention
    episodes (not eval, not discarded) fill the prior buffer ahead of the new run's demos (`num_demos` on the
    new task, or `demos=`); updates start at once.
  - reset: the baseline, a fresh start identical to a run without init_from (new weights, no pretraining
    data); init_from is only checked for a matching spec.

Warm starts load weights, not optimiser state: Adam's moments at the end of pretraining are those of
converged gradients on the old task (tiny second moments), so the new task's first, larger gradients would
take steps far above the learning rate until the moments catch up (beta2 0.999: about a thousand updates);
fresh moments with bias correction take learning-rate-sized steps from the first update
(`finetune.optimizer=keep` loads the source's moments instead). `finetune.critic_warmup` (warm starts): the first
that many learner updates train the critics only, the actor and temperature frozen, so that the critic has met
the new task's data before the policy follows it (measured on pick_cube_target without latency with an HL-Gauss
critic: no dip in success, where the actor updated from the first update dipped from 100% to 20%). The agent's
sampling RNG is the new run's (its seed), and critic updates count from 0 in the new run.

A fine-tune run writes its mode and source into config.yaml (`init_from`, `finetune`) and summary.json
(`finetune`). It resumes from its own checkpoint and never reloads init_from over it: the source is read
only while the run has no checkpoint yet (a restart before the first checkpoint starts again from the
source's weights and replays its own log, as any resume does), and by keep_offline, whose offline data is
reloaded at every start (as far as the source's log reached when the run first checkpointed).

The spec check (observation keys, shapes and dtypes, action size, from the source's episode log) runs before
anything is trained or logged; the agent's network shapes must match the source's checkpoint too. Observation
bounds may differ (task.action_scale sets the velocity bounds, the cube size the cube's lowest z): a warm start
keeps the source's input scaling, in its own checkpoints too (eval, export and resume read it from there).
The ROS learner (runtime/remote_learner.py) refuses init_from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from robot_rl.config import RuntimeConfig
from robot_rl.data.episode_log import EpisodeLog, spec_difference

MODES = ("none", "wsrl", "keep_offline", "reset")
WARM_STARTS = ("wsrl", "keep_offline")  # the modes that load the source's networks
CHECKPOINT_FILE, LOG_FILE = "checkpoint.pt", "episodes.zarr"  # as runtime/run.py names them
SOURCE_EPISODES = "finetune_source_episodes"  # checkpoint key: the source log episodes keep_offline loaded


@dataclass(frozen=True)
class Finetune:
    """A run's fine-tuning settings, validated (`finetune_config`)."""

    mode: str = "none"
    source: Path | None = None  # init_from
    warmup_steps: int = 0  # wsrl: env steps before the first update
    keep_optimizer: bool = False  # finetune.optimizer=keep: a warm start loads the source's Adam moments too
    critic_warmup: int = 0  # warm starts: the first learner updates train the critics only (actor frozen)

    @property
    def warm_start(self) -> bool:
        """The run starts from the source's networks."""
        return self.mode in WARM_STARTS

    @property
    def keeps_offline(self) -> bool:
        return self.mode == "keep_offline"

    @property
    def records_demos(self) -> bool:
        """wsrl keeps no offline data: no demos."""
        return self.mode != "wsrl"

    def update_after(self, learning_starts: int) -> int:
        """Online transitions in the buffer before updates begin: wsrl's warm-up, keep_offline at once
        (its offline data fills the batches), otherwise `runtime.learning_starts`."""
        return {"wsrl": self.warmup_steps, "keep_offline": 0}.get(self.mode, learning_starts)

    def summary(self) -> dict:
        """summary.json's `finetune` entry."""
        out: dict = {"mode": self.mode, "init_from": str(self.source) if self.source else None}
        if self.mode == "wsrl":
            out["warmup_steps"] = self.warmup_steps
        if self.critic_warmup:
            out["critic_warmup"] = self.critic_warmup
        return out


def finetune_config(cfg: DictConfig, rt: RuntimeConfig) -> Finetune:
    """The validated `init_from` + `finetune` keys of a train config; one-line errors for a mode without
    init_from, init_from without a mode, a missing or unfinished source run, and settings a mode rules out.
    The source is not required when the run resumes from its own checkpoint (except by keep_offline)."""
    node = cfg.get("finetune")
    node = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    mode = node.get("mode", "none")
    init_from = cfg.get("init_from")
    if mode not in MODES:
        raise ValueError(f"finetune.mode={mode!r} is not a fine-tuning mode: choose finetune=wsrl|keep_offline|reset")
    unknown = sorted(set(node) - {"mode", "warmup_steps", "optimizer", "critic_warmup"})
    if unknown:
        raise ValueError(
            f"unknown config key 'finetune.{unknown[0]}': the finetune group has mode, warmup_steps, optimizer "
            "and critic_warmup"
        )
    optimizer = node.get("optimizer", "fresh")
    if optimizer not in ("fresh", "keep"):
        raise ValueError(f"finetune.optimizer={optimizer!r} must be fresh or keep (the source's Adam moments)")
    if mode == "none":
        if init_from:
            raise ValueError(
                f"init_from={init_from} needs a fine-tuning mode: add finetune=wsrl (warm start, no offline data), "
                "finetune=keep_offline (warm start, keep the pretraining data) or finetune=reset (fresh start)"
            )
        return Finetune()
    if not init_from:
        raise ValueError(f"finetune={mode} needs init_from=<the pretrained run_dir>")
    source = Path(str(init_from))
    if source.resolve() == Path(str(cfg.run_dir)).resolve():
        raise ValueError(f"init_from={source} is this run's own run_dir: fine-tune into a new run_dir")
    warmup = 0
    if mode == "wsrl":
        warmup = _count(node, "warmup_steps", 1, "env steps before updates")
        if cfg.get("demos"):
            raise ValueError(
                f"finetune=wsrl keeps no offline data but demos={cfg.demos} was given: drop demos= "
                "(or use finetune=keep_offline)"
            )
    if mode in WARM_STARTS and rt.random_steps > 0:
        raise ValueError(
            f"runtime.random_steps={rt.random_steps} would replace the pretrained policy's actions with uniform "
            f"noise: set runtime.random_steps=0 with finetune={mode}"
        )
    critic_warmup = _count(node, "critic_warmup", 0, "learner updates that train the critics only", default=0)
    resuming = (Path(str(cfg.run_dir)) / CHECKPOINT_FILE).exists()
    if not resuming or mode == "keep_offline":
        check_source(source)
    return Finetune(mode, source, warmup, optimizer == "keep", critic_warmup if mode in WARM_STARTS else 0)


def _count(node: dict, key: str, low: int, meaning: str, default: int | None = None) -> int:
    """`finetune.<key>` as an integer >= `low`; a one-line error naming it otherwise."""
    value = node.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"finetune.{key}={value!r} must be an integer >= {low} ({meaning})")
    return value


def check_source(source: Path) -> None:
    """A one-line error unless `source` is a run directory with a checkpoint and an episode log."""
    if not source.is_dir():
        raise FileNotFoundError(f"init_from={source} does not exist: pass the run_dir of a `robot-rl train` run")
    missing = [name for name in (CHECKPOINT_FILE, LOG_FILE) if not (source / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"init_from={source} holds no trained run ({' and '.join(missing)} missing): pass the run_dir of a "
            "`robot-rl train` run that wrote a checkpoint"
        )


def source_task(source: Path) -> str:
    """The task name in the source run's config.yaml ('?' when unreadable)."""
    try:
        return str(OmegaConf.load(source / "config.yaml").task.name)
    except Exception:  # a missing or foreign config: the name is only for the message
        return "?"


def check_spec(source: Path, observation_space, action_dim: int, task: str) -> EpisodeLog:
    """The source's episode log, after checking that its observation spec and action size are this
    run's; a one-line ValueError naming both otherwise."""
    log = EpisodeLog(source / LOG_FILE)
    difference = spec_difference(log, observation_space, action_dim)
    if difference is not None:
        raise ValueError(
            f"init_from={source} was trained on {source_task(source)} with {difference} (task {task}): fine-tune "
            "on a task with the same observations and actions (same task.rotation, state or vision)"
        )
    return log


def load_pretrained(learner, source: Path, keep_optimizer: bool = False) -> None:
    """Warm-start `learner`'s agent from the source's checkpoint: networks and temperature only (see the
    module docstring); a one-line error when its architecture or observation bounds differ."""
    from robot_rl.runtime.learner import load_weights

    state = load_weights(source / CHECKPOINT_FILE, learner.agent.device)
    if not learner.agent.same_scaling(state["agent"]):
        print(
            f"[train] init_from={source}: this task's observation bounds differ from the source's; the agent keeps "
            "the source's input scaling (its networks were trained on it)",
            flush=True,
        )
    try:
        learner.agent.load_networks(
            state["agent"],
            fix=f"fine-tune with the agent config of {source / 'config.yaml'} (its agent group)",
            optimizers=keep_optimizer,
        )
    except ValueError as err:
        raise ValueError(f"init_from={source}: {err}") from None
